// 07 capacity: an open model, arrivals ramp from 100/s to RATE_MAX/s (default 2000) whatever the latency.
// k6's own VUs cost CPU on a 2-core machine; `chat4all loadtest capacity` is the lean generator for the knee.
import { thresholds, QUICK, registerUsers, userOf, sendMessage } from './lib/common.js';

const max = parseInt(__ENV.RATE_MAX || '2000', 10);
export const options = {
  scenarios: {
    capacity: {
      executor: 'ramping-arrival-rate', startRate: 100, timeUnit: '1s', preAllocatedVUs: 50, maxVUs: 400,
      stages: QUICK ? [{ duration: '10s', target: 200 }] : [{ duration: '2m', target: max }, { duration: '30s', target: max }],
    },
  },
  thresholds: thresholds(),
};
export function setup() { return { users: registerUsers(50) }; }
export default function (data) { sendMessage(userOf(data), __ITER); }
