-- The fence asked before a delivery is sent: 1 if the delivery (ARGV[1])
-- is in this instance's taken set (KEYS[1]); otherwise the instance's
-- heartbeat (KEYS[2], ARGV[2] ms, value ARGV[3]) and membership (KEYS[3],
-- ARGV[4]) are refreshed in the same step, so no takeover can happen for
-- at least ARGV[2] ms from now, and 0.
if redis.call('SISMEMBER', KEYS[1], ARGV[1]) == 1 then return 1 end
redis.call('SET', KEYS[2], ARGV[3], 'PX', ARGV[2])
redis.call('SADD', KEYS[3], ARGV[4])
return 0
