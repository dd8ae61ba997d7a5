-- The stored result of a single-flight computation: the value of KEYS[1], or nil.
-- A value is only ever written after a computation finished, so any non-nil answer is a result.
return redis.call('GET', KEYS[1])
