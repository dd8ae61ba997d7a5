-- A latch as this server knows it (latch.rs): {count or false, every count-down id seen}.
-- KEYS[1] the count, KEYS[2] the set of ids. Read only.
return {redis.call('GET', KEYS[1]) or false, redis.call('SMEMBERS', KEYS[2])}
