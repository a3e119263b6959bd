// 05 stress: 10 → 100 VUs, 10 more every minute.
import { thresholds, quick, QUICK, registerUsers, userOf, sendMessage } from './lib/common.js';

const stages = [];
for (let vus = 20; vus <= 100; vus += 10) stages.push({ duration: '1m', target: vus });
export const options = {
  scenarios: QUICK ? quick(100) : { stress: { executor: 'ramping-vus', startVUs: 10, stages } },
  thresholds: thresholds(),
};
export function setup() { return { users: registerUsers(100) }; }
export default function (data) { sendMessage(userOf(data), __ITER); }
