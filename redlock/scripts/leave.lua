-- A waiter that stopped waiting (granted by a local hand-off, timed out, cancelled) leaves the
-- queues of KEYS (n lock keys, their n queues, their n queue deadlines; queue.lua). A grant
-- still held for it (queue.lua) passes on to the next head. ARGV[1] is the member. Returns 1.
local member = ARGV[1]
local n = #KEYS / 3
for i = 1, n do
  redis.call('ZREM', KEYS[n + i], member)
  redis.call('ZREM', KEYS[2 * n + i], member)
  if redis.call('GET', KEYS[i]) == grant_of(member) then
    pass_on(KEYS[i], KEYS[n + i], KEYS[2 * n + i])
  end
end
return 1
