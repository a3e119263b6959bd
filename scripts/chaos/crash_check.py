#!/usr/bin/env python3
"""Crash check: steady load against `chat4all serve`, SIGKILL at random moments, restart on the same data dir,
then verify that every message that got a 202 is in its conversation's history exactly once, with gap-free seq,
and in a final status. The server runs without request rate limits and with WhatsApp's pacing lifted, so the
check measures crash safety, not throttling. Loopback only; every loop is bounded.

    cargo build --release && python3 scripts/chaos/crash_check.py --kills 5
"""
import argparse, http.client, json, subprocess, threading, time, random, shutil, signal, sys, tempfile

args = argparse.ArgumentParser(description=__doc__.splitlines()[0])
args.add_argument("--kills", type=int, default=5, help="SIGKILLs to inflict (default 5)")
args.add_argument("--bin", default="target/release/chat4all", help="the chat4all binary")
args.add_argument("--port", type=int, default=18099, help="loopback port to use")
args.add_argument("--writers", type=int, default=16, help="concurrent senders")
opts = args.parse_args()
BIN = opts.bin; PORT = opts.port
D = tempfile.mkdtemp(prefix="chat4all-crash-")
LOG = open(D + ".log", "a")
def start():
    p=subprocess.Popen([BIN,'serve','--data-dir',D,'--http-addr',f'127.0.0.1:{PORT}','--whatsapp-latency-ms','1-5','--rate-limit-per-sec','0','--whatsapp-rate-per-sec','100000'],stdout=LOG,stderr=subprocess.STDOUT)
    for _ in range(200):
        try:
            c=http.client.HTTPConnection('127.0.0.1',PORT,timeout=2); c.request('GET','/health'); 
            if c.getresponse().status==200: return p
        except Exception: time.sleep(0.02)
    raise SystemExit('the server did not become ready; see ' + LOG.name)
def call(method,path,body=None,token=None):
    c=http.client.HTTPConnection('127.0.0.1',PORT,timeout=5)
    h={'Content-Type':'application/json'}
    if token: h['Authorization']='Bearer '+token
    c.request(method,path,json.dumps(body) if body is not None else None,h); r=c.getresponse(); return r.status, r.read()
p=start()
call('POST','/auth/register',{'username':'alice','password':'password1'})
tok=json.loads(call('POST','/auth/token',{'username':'alice','password':'password1'})[1])['access_token']
acked=[]; lock=threading.Lock(); stop=False
def worker(i):
    c=http.client.HTTPConnection('127.0.0.1',PORT,timeout=5)
    n=0
    while not stop:
        conv=f'c{i%4}'; rec = 'whatsapp:+5511999990000' if n%2 else None
        body={'conversation_id':conv,'content':f'w{i}-{n}'}
        if rec: body['recipient_id']=rec
        try:
            c.request('POST','/v1/messages',json.dumps(body),{'Content-Type':'application/json','Authorization':'Bearer '+tok}); r=c.getresponse(); data=r.read()
            if r.status==202:
                with lock: acked.append((conv,json.loads(data)['message_id']))
        except Exception:
            c=http.client.HTTPConnection('127.0.0.1',PORT,timeout=5); time.sleep(0.01)
        n+=1
for kill in range(opts.kills):
    stop=False
    ts=[threading.Thread(target=worker,args=(i,)) for i in range(opts.writers)]
    [t.start() for t in ts]
    time.sleep(random.uniform(0.5,1.5)); p.send_signal(signal.SIGKILL); p.wait(); stop=True
    [t.join() for t in ts]
    p=start()
time.sleep(1)
# wait final statuses
deadline=time.time()+20
while True:
    hist={}
    for c in ['c0','c1','c2','c3']:
        msgs=[]; after=0
        while True:
            st,b=call('GET',f'/v1/conversations/{c}/messages?limit=100&after={after}',token=tok); d=json.loads(b)
            msgs+=d['messages']
            if not d['pagination']['has_more']: break
            after=d['pagination']['next_cursor']
        hist[c]=msgs
    pending=sum(1 for c in hist for m in hist[c] if m['status'] not in ('DELIVERED','FAILED'))
    if pending==0 or time.time()>deadline: break
    time.sleep(0.5)
ids={m['message_id'] for c in hist for m in hist[c]}
allm=[m['message_id'] for c in hist for m in hist[c]]
lost=[a for a in acked if a[1] not in ids]
gaps=sum(1 for c in hist if [m['seq'] for m in hist[c]]!=list(range(1,len(hist[c])+1)))
print(f'kills={opts.kills} acked={len(acked)} stored={len(allm)} distinct={len(ids)} lost={len(lost)} duplicated={len(allm)-len(ids)} seq_gaps={gaps} not_final={pending}')
p.send_signal(signal.SIGTERM); p.wait()
shutil.rmtree(D, ignore_errors=True)
sys.exit(0 if not lost and len(allm) == len(ids) and gaps == 0 and pending == 0 else 1)
