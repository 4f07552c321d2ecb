"""The Lua scripts of the Redis Streams backend: each one round trip, each atomic.

Keys are always passed in ``KEYS`` (all of one topic share a hash tag). Entry ids, counts
and indexes come back as Redis strings and integers; nothing returns a Lua float.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis
from redis.commands.core import AsyncScript

# Lua helpers shared by several scripts.
_UNPACK_MEMBER = """
local function unpack_member(member)
  local items, pos, size = {}, 1, 0
  while pos <= #member do
    size = struct.unpack('>I4', member, pos)
    pos = pos + 4
    items[#items + 1] = string.sub(member, pos, pos + size - 1)
    pos = pos + size
  end
  return items
end
"""

_ID_LESS = """
local function id_less(a, b)
  local ams, aseq = string.match(a, '^(%d+)-(%d+)$')
  local bms, bseq = string.match(b, '^(%d+)-(%d+)$')
  ams, bms = tonumber(ams), tonumber(bms)
  if ams ~= bms then return ams < bms end
  return tonumber(aseq) < tonumber(bseq)
end
local function as_table(flat)
  local t = {}
  for j = 1, #flat, 2 do t[flat[j]] = flat[j + 1] end
  return t
end
"""

ENSURE_GROUP = """
-- KEYS[1]: the topic's groups set; KEYS[2..]: every stream the group reads.
-- ARGV[1]: group. Creates the group at the start of each stream (a new group reads what is
-- retained), registers it; an existing group is left as it is.
for i = 2, #KEYS do
  local reply = redis.pcall('XGROUP', 'CREATE', KEYS[i], ARGV[1], '0', 'MKSTREAM')
  if type(reply) == 'table' and reply.err and not string.find(reply.err, 'BUSYGROUP') then
    return reply
  end
end
redis.call('SADD', KEYS[1], ARGV[1])
return 1
"""

PLAN = (
    _UNPACK_MEMBER
    + _ID_LESS
    + """
-- KEYS[1]: topic delayed zset; KEYS[2]: group delayed zset;
-- KEYS[3..13]: read order (group retry stream, lanes 9..0).
-- ARGV: group, now_ms, promote_limit.
-- 1. Moves due delayed publishes into their lane and due retries into the retry stream.
-- 2. Counts, per stream in read order, the entries not yet delivered to the group (the
--    group's lag; -1 when Redis cannot tell), so the caller reads exactly what it needs
--    with plain XREADGROUPs (far cheaper than reading through Lua).
-- Returns {next_due_ms or '', waiting per stream...}; a NOGROUP error if the group is gone
-- from a stream that has entries.
local function promote(zkey, to_lanes)
  local due = redis.call('ZRANGEBYSCORE', zkey, '-inf', ARGV[2], 'LIMIT', 0, ARGV[3])
  for _, member in ipairs(due) do
    local items = unpack_member(member)
    local target = KEYS[3]
    if to_lanes then target = KEYS[13 - tonumber(items[1])] end
    table.remove(items, 1)
    redis.call('XADD', target, '*', unpack(items))
  end
  if #due > 0 then redis.call('ZREM', zkey, unpack(due)) end
end
promote(KEYS[1], true)
promote(KEYS[2], false)
local out = {''}
for i = 3, 13 do
  -- An empty stream has nothing waiting: XINFO (the bulk of this script's cost) only runs
  -- on streams with entries. A group missing on an empty stream is found by the blocking
  -- read that follows a plan with nothing to read.
  local waiting = 0
  if redis.call('XLEN', KEYS[i]) > 0 then
    waiting = nil
    for _, flat in ipairs(redis.call('XINFO', 'GROUPS', KEYS[i])) do
      local group = as_table(flat)
      if group['name'] == ARGV[1] then waiting = group['lag'] or -1 end
    end
  end
  if waiting == nil then
    return redis.error_reply('NOGROUP group ' .. ARGV[1] .. ' is missing on ' .. KEYS[i])
  end
  out[#out + 1] = waiting
end
for z = 1, 2 do
  local first = redis.call('ZRANGE', KEYS[z], 0, 0, 'WITHSCORES')
  if first[2] and (out[1] == '' or tonumber(first[2]) < tonumber(out[1])) then
    out[1] = first[2]
  end
end
return out
"""
)

AUTOCLAIM = """
-- KEYS: read order streams. ARGV: group, consumer, min_idle_ms, count, max_scans.
-- Claims entries idle for min_idle_ms (their consumer went away), retries first.
-- Returns {index, id, deliveries, fields, ...}; deliveries counts this claim.
local out = {}
local remaining = tonumber(ARGV[4])
for i = 1, #KEYS do
  if remaining <= 0 then break end
  local cursor = '0-0'
  for _ = 1, tonumber(ARGV[5]) do
    local reply = redis.call(
      'XAUTOCLAIM', KEYS[i], ARGV[1], ARGV[2], ARGV[3], cursor, 'COUNT', remaining)
    for _, entry in ipairs(reply[2]) do
      if entry then
        local pending = redis.call('XPENDING', KEYS[i], ARGV[1], entry[1], entry[1], 1)
        out[#out + 1] = i - 1
        out[#out + 1] = entry[1]
        out[#out + 1] = pending[1][4]
        out[#out + 1] = entry[2]
        remaining = remaining - 1
      end
    end
    cursor = reply[1]
    if cursor == '0-0' or remaining <= 0 then break end
  end
end
return out
"""

EXTEND = """
-- KEYS: streams; ARGV: group, consumer, then per key: n, id1..idn.
-- Resets the idle time of the listed entries this consumer still owns (a lease extension
-- that does not count a delivery). Returns {index, id, ...} of entries it no longer owns.
local pos, lost = 3, {}
for i = 1, #KEYS do
  local n = tonumber(ARGV[pos])
  pos = pos + 1
  local claim = {'XCLAIM', KEYS[i], ARGV[1], ARGV[2], 0}
  for _ = 1, n do
    local id = ARGV[pos]
    pos = pos + 1
    local pending = redis.call('XPENDING', KEYS[i], ARGV[1], id, id, 1)
    if pending[1] and pending[1][2] == ARGV[2] then
      claim[#claim + 1] = id
    else
      lost[#lost + 1] = i - 1
      lost[#lost + 1] = id
    end
  end
  if #claim > 5 then
    claim[#claim + 1] = 'JUSTID'
    redis.call(unpack(claim))
  end
end
return lost
"""

RELEASE = """
-- KEYS: read order streams. ARGV: group, consumer, idle_ms, parking consumer, then
-- 'index:id' entries to keep.
-- Gives every other entry this consumer holds back to the group at once: hands it to the
-- parking consumer with an idle time past any visibility timeout (so the next XAUTOCLAIM of
-- any consumer takes it) and undoes the delivery count of the fetch that never reached a
-- handler. Forgets the consumer when it holds nothing. Returns how many were given back.
local keep, kept, released = {}, 0, 0
for i = 5, #ARGV do keep[ARGV[i]] = true end
for i = 1, #KEYS do
  local pending = redis.pcall('XPENDING', KEYS[i], ARGV[1], '-', '+', 100000, ARGV[2])
  if not pending.err then
    for _, entry in ipairs(pending) do
      if keep[(i - 1) .. ':' .. entry[1]] then
        kept = kept + 1
      else
        redis.call('XCLAIM', KEYS[i], ARGV[1], ARGV[4], 0, entry[1], 'IDLE', ARGV[3],
          'RETRYCOUNT', math.max(entry[4] - 1, 0), 'JUSTID')
        released = released + 1
      end
    end
  end
end
if kept == 0 then
  for i = 1, #KEYS do redis.pcall('XGROUP', 'DELCONSUMER', KEYS[i], ARGV[1], ARGV[2]) end
end
return released
"""

TRIM = (
    _ID_LESS
    + """
-- KEYS: lane streams. ARGV: idle_ms after which a consumer holding nothing is forgotten.
-- Deletes the entries every group of a lane has acknowledged: XTRIM MINID to the oldest
-- entry some group still needs (its oldest pending entry, else its last delivered one).
-- A lane no group reads yet keeps everything. Returns how many entries were deleted.
local trimmed = 0
for i = 1, #KEYS do
  if redis.call('EXISTS', KEYS[i]) == 1 then
    local floor = nil
    for _, flat in ipairs(redis.call('XINFO', 'GROUPS', KEYS[i])) do
      local group = as_table(flat)
      local needed = group['last-delivered-id']
      if group['pending'] > 0 then
        needed = redis.call('XPENDING', KEYS[i], group['name'])[2]
      end
      if floor == nil or id_less(needed, floor) then floor = needed end
      for _, cflat in ipairs(redis.call('XINFO', 'CONSUMERS', KEYS[i], group['name'])) do
        local consumer = as_table(cflat)
        if consumer['pending'] == 0 and consumer['idle'] > tonumber(ARGV[1]) then
          redis.call('XGROUP', 'DELCONSUMER', KEYS[i], group['name'], consumer['name'])
        end
      end
    end
    if floor ~= nil then trimmed = trimmed + redis.call('XTRIM', KEYS[i], 'MINID', floor) end
  end
end
return trimmed
"""
)

_GROUP_LAG = """
-- Entries of lane `key` not yet delivered to `name` (every entry if the group is not there).
local function lag_of(key, groups, name)
  local group = groups[name]
  if group == nil then return redis.call('XLEN', key), 0, 0 end
  local lag = group['lag']
  if not lag then
    lag = #redis.call('XRANGE', key, '(' .. group['last-delivered-id'], '+')
  end
  return lag, group['pending'], group['consumers']
end
local function groups_of(key)
  local groups = {}
  if redis.call('EXISTS', key) == 1 then
    for _, flat in ipairs(redis.call('XINFO', 'GROUPS', key)) do
      local group = as_table(flat)
      groups[group['name']] = group
    end
  end
  return groups
end
"""

STATS = (
    _ID_LESS
    + _GROUP_LAG
    + """
-- KEYS[1..10]: lanes 0..9; KEYS[11]: topic delayed; KEYS[12]: dlq;
-- then per group: retry stream, group delayed. ARGV: group names.
-- Returns {dead letters, then per group: depth, in flight, delayed, consumers}.
local out = {redis.call('XLEN', KEYS[12])}
local lanes = {}
for i = 1, 10 do lanes[i] = groups_of(KEYS[i]) end
local topic_delayed = redis.call('ZCARD', KEYS[11])
for g = 1, #ARGV do
  local name = ARGV[g]
  local depth, in_flight, consumers = 0, 0, 0
  for i = 1, 10 do
    local lag, pending, count = lag_of(KEYS[i], lanes[i], name)
    depth = depth + lag
    in_flight = in_flight + pending
    consumers = math.max(consumers, count)
  end
  local retry = KEYS[11 + 2 * g]
  local retry_pending = 0
  local retry_group = groups_of(retry)[name]
  if retry_group then
    retry_pending = retry_group['pending']
    consumers = math.max(consumers, retry_group['consumers'])
  end
  depth = depth + redis.call('XLEN', retry) - retry_pending
  in_flight = in_flight + retry_pending
  out[#out + 1] = depth
  out[#out + 1] = in_flight
  out[#out + 1] = topic_delayed + redis.call('ZCARD', KEYS[12 + 2 * g])
  out[#out + 1] = consumers
end
return out
"""
)

PURGE = (
    _ID_LESS
    + _GROUP_LAG
    + """
-- KEYS[1..10]: lanes 0..9; KEYS[11]: topic delayed; then per group: retry, group delayed.
-- ARGV: group names (none: the topic has no group yet).
-- Drops what no consumer holds: moves each group past the end of every lane (pending
-- entries stay pending), deletes undelivered retries and every delayed message. The caller
-- trims the lanes afterwards. Returns how many messages were dropped, summed over groups.
local dropped = 0
local topic_delayed = redis.call('ZCARD', KEYS[11])
if #ARGV == 0 then
  for i = 1, 10 do
    dropped = dropped + redis.call('XLEN', KEYS[i])
    if redis.call('EXISTS', KEYS[i]) == 1 then redis.call('XTRIM', KEYS[i], 'MAXLEN', 0) end
  end
  dropped = dropped + topic_delayed
else
  for i = 1, 10 do
    local groups = groups_of(KEYS[i])
    for g = 1, #ARGV do
      if groups[ARGV[g]] then
        dropped = dropped + lag_of(KEYS[i], groups, ARGV[g])
        redis.call('XGROUP', 'SETID', KEYS[i], ARGV[g], '$')
      end
    end
  end
  for g = 1, #ARGV do
    local retry, delayed = KEYS[10 + 2 * g], KEYS[11 + 2 * g]
    local group = groups_of(retry)[ARGV[g]]
    if group then
      local waiting = redis.call('XRANGE', retry, '(' .. group['last-delivered-id'], '+')
      for _, entry in ipairs(waiting) do redis.call('XDEL', retry, entry[1]) end
      dropped = dropped + #waiting
    end
    dropped = dropped + topic_delayed + redis.call('ZCARD', delayed)
    redis.call('DEL', delayed)
  end
end
redis.call('DEL', KEYS[11])
return dropped
"""
)

PURGE_DEAD_LETTERS = """
-- KEYS[1]: dlq stream. Returns how many dead letters were deleted.
local count = redis.call('XLEN', KEYS[1])
redis.call('DEL', KEYS[1])
return count
"""


@dataclass(frozen=True, slots=True)
class Scripts:
    """The scripts registered on one client (EVALSHA, reloaded after a Redis restart)."""

    ensure_group: AsyncScript
    plan: AsyncScript
    autoclaim: AsyncScript
    extend: AsyncScript
    release: AsyncScript
    trim: AsyncScript
    stats: AsyncScript
    purge: AsyncScript
    purge_dead_letters: AsyncScript

    @classmethod
    def register(cls, client: Redis) -> Scripts:
        def script(source: str) -> AsyncScript:
            return client.register_script(source)

        return cls(
            ensure_group=script(ENSURE_GROUP),
            plan=script(PLAN),
            autoclaim=script(AUTOCLAIM),
            extend=script(EXTEND),
            release=script(RELEASE),
            trim=script(TRIM),
            stats=script(STATS),
            purge=script(PURGE),
            purge_dead_letters=script(PURGE_DEAD_LETTERS),
        )


async def run(script: AsyncScript, keys: list[str], args: list[Any]) -> Any:
    """Run ``script`` (typed wrapper: redis-py's script call is untyped)."""
    return await script(keys=keys, args=args)
