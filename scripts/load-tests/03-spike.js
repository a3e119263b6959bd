// 03 spike: 5 → 50 VUs in 30 s, hold 1 minute, back to 5 (p99 < 500 ms allowed during the spike).
import { thresholds, quick, QUICK, registerUsers, userOf, sendMessage } from './lib/common.js';

export const options = {
  scenarios: QUICK ? quick(50) : {
    spike: {
      executor: 'ramping-vus', startVUs: 5,
      stages: [{ duration: '30s', target: 50 }, { duration: '1m', target: 50 }, { duration: '30s', target: 5 }],
    },
  },
  thresholds: thresholds({ 'http_req_duration{endpoint:send}': ['p(95)<200', 'p(99)<500'] }),
};
export function setup() { return { users: registerUsers(50) }; }
export default function (data) { sendMessage(userOf(data), __ITER); }
