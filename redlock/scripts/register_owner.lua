-- Record a client's description (owner.rs): KEYS[1] = ARGV[1] for ARGV[2] ms. Returns the
-- server's time in microseconds: the client reads its queue tickets on the servers' clock
-- (server_clock.rs).
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
local t = redis.call('TIME')
return tonumber(t[1]) * 1000000 + tonumber(t[2])
