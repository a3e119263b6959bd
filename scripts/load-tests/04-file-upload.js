// 04 file upload: 10 VUs for 3 minutes uploading files of 100 KB to 1 MB.
import { thresholds, quick, QUICK, registerUsers, userOf, uploadFile } from './lib/common.js';

export const options = {
  scenarios: QUICK ? quick(10) : { upload: { executor: 'constant-vus', vus: 10, duration: '3m' } },
  thresholds: thresholds({ 'http_req_duration{endpoint:upload}': ['p(95)<500'], 'http_req_duration{endpoint:send}': [] }),
};
export function setup() { return { users: registerUsers(10) }; }
export default function (data) {
  const size = 100 * 1024 + Math.floor(Math.random() * 924 * 1024);
  uploadFile(userOf(data), size, __ITER);
}
