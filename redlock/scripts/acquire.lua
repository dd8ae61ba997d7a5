-- Take every lock key for token ARGV[1] with ttl ARGV[2] milliseconds, or none of them.
-- Without fencing (ARGV[3] == '0') KEYS are the lock keys. With fencing (ARGV[3] == '1') KEYS
-- are the n lock keys followed by their n fence counters (no ttl; they only ever grow).
-- Returns {1} or, fenced, {1, fence} with the largest counter after incrementing each;
-- or {0, i, pttl} naming the first lock key (1-based) held by someone else and its remaining
-- ttl in ms (-1: the holder set no expiry).
-- Any existing key refuses, even one with our own token: every round uses a fresh token, so
-- a key with our token is a leftover of a round that is being undone.
-- (Single unfenced keys take the plain SET NX PX path instead; same semantics.)
local token = ARGV[1]
local fenced = ARGV[3] == '1'
local n = #KEYS
if fenced then
  n = n / 2
end
for i = 1, n do
  if redis.call('EXISTS', KEYS[i]) == 1 then
    return {0, i, redis.call('PTTL', KEYS[i])}
  end
end
for i = 1, n do
  redis.call('SET', KEYS[i], token, 'PX', ARGV[2])
end
if not fenced then
  return {1}
end
local fence = 0
for i = n + 1, #KEYS do
  local value = redis.call('INCR', KEYS[i])
  if value > fence then
    fence = value
  end
end
return {1, fence}
