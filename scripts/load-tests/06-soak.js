// 06 soak: 30 VUs for 15 minutes, 70 % sends and 30 % history reads.
import { thresholds, quick, QUICK, registerUsers, userOf, sendMessage, readHistory } from './lib/common.js';

export const options = {
  scenarios: QUICK ? quick(30) : { soak: { executor: 'constant-vus', vus: 30, duration: '15m' } },
  thresholds: thresholds({ 'http_req_duration{endpoint:history}': ['p(95)<200'] }),
};
export function setup() { return { users: registerUsers(30) }; }
const written = []; // this VU's conversations that exist (history of others would be 403/404)
export default function (data) {
  const user = userOf(data);
  if (written.length === 0 || Math.random() < 0.7) {
    const conversation = sendMessage(user, __ITER);
    if (!written.includes(conversation)) written.push(conversation);
  } else {
    readHistory(user, written[__ITER % written.length]);
  }
}
