-- One count-down of a latch on this server (latch.rs). KEYS[1] holds the latch's count,
-- KEYS[2] the set of count-down ids seen here; ARGV[1] the count, ARGV[2] this
-- count-down's id, ARGV[3] how long the latch lives after its last count-down (ms),
-- ARGV[4] the release channel prefix, ARGV[5] the announcing client.
-- The first count-down on a server records the count; a different count for
-- the same name is an error. Adding an id twice counts once, so a count-down can be sent
-- again after a failure without counting twice. Announces on the release channel of
-- KEYS[1], which wakes the latch's waiters.
-- Returns the number of ids seen here.
local count, id, ttl = ARGV[1], ARGV[2], ARGV[3]
local current = redis.call('GET', KEYS[1])
if current and current ~= count then
  return redis.error_reply('QUORATE_LATCH_COUNT ' .. current)
end
redis.call('SET', KEYS[1], count, 'PX', ttl)
redis.call('SADD', KEYS[2], id)
redis.call('PEXPIRE', KEYS[2], ttl)
redis.call('PUBLISH', ARGV[4] .. KEYS[1], ARGV[5])
return redis.call('SCARD', KEYS[2])
