// 02 baseline: 20 VUs for 5 minutes of sends, no think time.
import { thresholds, quick, QUICK, registerUsers, userOf, sendMessage } from './lib/common.js';

export const options = {
  scenarios: QUICK ? quick(20) : { baseline: { executor: 'constant-vus', vus: 20, duration: '5m' } },
  thresholds: thresholds(),
};
export function setup() { return { users: registerUsers(20) }; }
export default function (data) { sendMessage(userOf(data), __ITER); }
