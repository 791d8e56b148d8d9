"""The store's Lua scripts. Each declares every key it touches in KEYS (never builds a key
name inside the script), so on Redis Cluster, where all of a store's keys share one hash
slot (``{prefix}``, see :mod:`bot.store.keys`), each runs on the one node that owns that
slot; Redis runs a script atomically, without interleaving other clients' commands."""

from __future__ import annotations

ADD_CHUNK = 2000  # ticks per script call
ADD_TICKS = """
local k = KEYS[1]
for i = 2, #ARGV, 4 do
  redis.call('XADD', k, '*', 's', ARGV[i], 'v', ARGV[i+1], 't', ARGV[i+2], 'src', ARGV[i+3])
end
redis.call('XTRIM', k, 'MAXLEN', '~', ARGV[1])
return (#ARGV - 1) / 4
"""


# KEYS lease, fence; ARGV owner, ttl ms. {1, value} when ours (renewed, or taken with a new
# token when free), {0, holder} when another owner holds it.
ENGINE_LEASE = """
local cur = redis.call('GET', KEYS[1])
if cur then
  local owner = string.sub(cur, (string.find(cur, ':', 1, true) or 0) + 1)
  if owner ~= ARGV[1] then return {0, cur} end
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return {1, cur}
end
local value = redis.call('INCR', KEYS[2]) .. ':' .. ARGV[1]
redis.call('SET', KEYS[1], value, 'PX', ARGV[2])
return {1, value}
"""
# KEYS lease; ARGV value, ttl ms.
ENGINE_RENEW = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1
"""
ENGINE_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""
# KEYS lease, outbox, checkpoint, rules, latest, pages, series keys...; ARGV fence ('' for
# none: a replay), pages base ('' to replace them all), pages rev, n, (id, alert)*n, position,
# fingerprint, clock, state, m, (rule, state)*m, k, (symbol, latest)*k, keep_after, then per
# series key: count, (score, member)*count; then p, (page, data)*p, d, page*d.
# {1, outbox ids...} when written; {0, holder} when the fence is stale and {2, revision} when
# the pages are not of the base revision (both writing nothing at all).
FENCED_COMMIT = """
if ARGV[1] ~= '' then
  local cur = redis.call('GET', KEYS[1])
  if cur ~= ARGV[1] then return {0, cur or ''} end
end
if ARGV[2] ~= '' then
  local rev = redis.call('HGET', KEYS[3], 'pages_rev')
  if rev ~= ARGV[2] then return {2, rev or ''} end
end
local out = {1}
local i = 5
for _ = 1, tonumber(ARGV[4]) do
  out[#out + 1] = redis.call('XADD', KEYS[2], '*', 'id', ARGV[i], 'alert', ARGV[i + 1])
  i = i + 2
end
redis.call('HSET', KEYS[3], 'position', ARGV[i], 'fingerprint', ARGV[i + 1],
  'clock', ARGV[i + 2], 'state', ARGV[i + 3], 'pages_rev', ARGV[3])
i = i + 4
for _, key in ipairs({KEYS[4], KEYS[5]}) do
  local n = tonumber(ARGV[i])
  i = i + 1
  for _ = 1, n do
    redis.call('HSET', key, ARGV[i], ARGV[i + 1])
    i = i + 2
  end
end
local keep = ARGV[i]
i = i + 1
for s = 7, #KEYS do
  local n = tonumber(ARGV[i])
  i = i + 1
  for _ = 1, n do
    redis.call('ZADD', KEYS[s], ARGV[i], ARGV[i + 1])
    i = i + 2
  end
  redis.call('ZREMRANGEBYSCORE', KEYS[s], '-inf', '(' .. keep)
end
if ARGV[2] == '' then redis.call('DEL', KEYS[6]) end
local n = tonumber(ARGV[i])
i = i + 1
for _ = 1, n do
  redis.call('HSET', KEYS[6], ARGV[i], ARGV[i + 1])
  i = i + 2
end
n = tonumber(ARGV[i])
i = i + 1
for _ = 1, n do
  redis.call('HDEL', KEYS[6], ARGV[i])
  i = i + 1
end
return out
"""
# KEYS lease, status; ARGV fence, record. 1 when written, {0, holder} when the fence is stale.
FENCED_SET = """
local cur = redis.call('GET', KEYS[1])
if cur ~= ARGV[1] then return {0, cur or ''} end
redis.call('SET', KEYS[2], ARGV[2])
return {1}
"""
