-- Whether lock key KEYS[1] is held by anyone on this node: its PTTL in ms
-- (-2: absent, -1: held with no expiry).
return redis.call('PTTL', KEYS[1])
