// 01 warm-up: 5 VUs for 2 minutes of sends, no think time.
import { thresholds, quick, QUICK, registerUsers, userOf, sendMessage } from './lib/common.js';

export const options = {
  scenarios: QUICK ? quick(5) : { warmup: { executor: 'constant-vus', vus: 5, duration: '2m' } },
  thresholds: thresholds(),
};
export function setup() { return { users: registerUsers(5) }; }
export default function (data) { sendMessage(userOf(data), __ITER); }
