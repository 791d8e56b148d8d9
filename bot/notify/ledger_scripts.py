"""The ledger's Lua scripts (:class:`bot.notify.ledger.Ledger`). Each declares every key it
touches in KEYS, so on Redis Cluster (one hash slot per store) it runs on the node owning
them; Redis runs a script atomically, without interleaving other clients' commands."""

from __future__ import annotations

# KEYS[1] claim; ARGV owner, ttl ms. 1: ours (taken or renewed), 0: another owner's.
CLAIM = """
local cur = redis.call('GET', KEYS[1])
if cur and cur ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
"""
# KEYS[1] claim, KEYS[2] attempts, KEYS[3] marks; ARGV owner, ttl ms, alert id,
# "part|sending", part. Marks are compact JSON (orjson): {"status":"...","parts":N,...}.
BEGIN = """
local cur = redis.call('GET', KEYS[1])
if cur and cur ~= ARGV[1] then return 0 end
local m = redis.call('HGET', KEYS[3], ARGV[3])
local part = tonumber(ARGV[5])
if m then
  local st = string.match(m, '"status":"(%a+)"')
  local done = tonumber(string.match(m, '"parts":(%d+)') or '0')
  if st == 'sent' or st == 'dropped' or done ~= part then return -1 end
elseif part ~= 0 then
  return -1
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
redis.call('HSET', KEYS[2], ARGV[3], ARGV[4])
return 1
"""
# KEYS[1] lease; ARGV owner, ttl ms. 1 when ours, else the holder's name.
LEASE = """
local cur = redis.call('GET', KEYS[1])
if cur and cur ~= ARGV[1] then return cur end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
"""
# KEYS[1] lease, KEYS[2] (optional) claim; ARGV owner, ttl ms. 0 when the lease is not ours.
RENEW = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
if KEYS[2] then
  local c = redis.call('GET', KEYS[2])
  if c == false or c == ARGV[1] then redis.call('SET', KEYS[2], ARGV[1], 'PX', ARGV[2]) end
end
return 1
"""
# KEYS[1] a lease or a claim; ARGV owner.
RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""
