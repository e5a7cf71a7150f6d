-- fraudpipe online features: one call computes (and records) the stateful features of a
-- whole batch, in order. The semantics are in definition.py; offline.py is the same
-- computation in Python, and tests prove they agree.
--
-- ARGV[1] key prefix   ARGV[2] "1" = dry run (compute only, write nothing)
-- ARGV[3] user-state TTL seconds   ARGV[4] per-transaction record TTL seconds
-- ARGV[5] JSON array of [tx_id, user_id, ts, amount_units, log_amount, country, device, merchant]
-- Returns one string: each transaction's stateful values as little-endian doubles, in order
-- (exact, and decoded by numpy in one step).
--
-- Cost is what bounds the scorer, so Redis is touched as little as possible: one MGET for the
-- batch's replay records, one MGET for its users' states, then one SET per user and one per
-- new transaction. A user's whole state is one MessagePack value (doubles kept exactly),
-- decoded once per batch however many of the user's transactions the batch holds.
--
-- User state: {n, mean, m2, last_ts (or false), countries = {country: count},
--              devices = {device: 1}, merchants = {merchant: 1},
--              events = {ts, units, country, device, ts, ...} (the last 24 h in arrival order,
--                        flat: one table to decode, not one per event)}

local prefix = ARGV[1]
local dry = ARGV[2] == '1'
local user_ttl = tonumber(ARGV[3])
local tx_ttl = tonumber(ARGV[4])
local txs = cjson.decode(ARGV[5])

local DAY, WINDOWS = 86400, {60, 3600, 86400}
local SCALE, NO_PREVIOUS, FLOOR, CLIP = 10000, 1e6, 0.1, 20
local PACKED = '<' .. string.rep('d', 15)  -- the 15 stateful features, STATEFUL_FEATURES order

-- Byte-wise string order (Lua's < follows the C locale's collation, which may differ).
local function bytes_less(a, b)
  local la, lb = #a, #b
  for i = 1, math.min(la, lb) do
    local ca, cb = string.byte(a, i), string.byte(b, i)
    if ca ~= cb then return ca < cb end
  end
  return la < lb
end

-- MGET in slices: unpack() of thousands of arguments would overflow Lua's C stack.
local function mget(keys)
  local values = {}
  for first = 1, #keys, 1000 do
    local last = math.min(first + 999, #keys)
    local part = redis.call('MGET', unpack(keys, first, last))
    for j = 1, #part do values[first + j - 1] = part[j] end
  end
  return values
end

local function user_key(user) return prefix .. 'u:{' .. user .. '}' end

local function fresh_state()
  return {n = 0, mean = 0, m2 = 0, last_ts = false,
          countries = {}, devices = {}, merchants = {}, events = {}}
end

-- The batch's replay records and users, each fetched once.
local record_keys, users, user_keys = {}, {}, {}
for i, t in ipairs(txs) do
  -- 'txv:', not the first layout's 'tx:' (text values): a replay record of that layout must
  -- never be read as packed doubles.
  record_keys[i] = prefix .. 'txv:' .. t[1]
  if users[t[2]] == nil then
    users[t[2]] = false
    user_keys[#user_keys + 1] = t[2]
  end
end
local known = mget(record_keys)
local blobs = {}
for j, user in ipairs(user_keys) do blobs[j] = user_key(user) end
blobs = mget(blobs)
for j, user in ipairs(user_keys) do
  local blob = blobs[j]
  users[user] = blob and cmsgpack.unpack(blob) or fresh_state()
end

local out, done, touched = {}, {}, {}
for i, t in ipairs(txs) do
  local tx_id, user, ts, units, x = t[1], t[2], t[3], t[4], t[5]
  local country, device, merchant = t[6], t[7], t[8]
  local previous = known[i] or done[tx_id]
  if previous then
    out[i] = previous
  else
    local s = users[user]
    local n, mean, m2, last_ts = s.n, s.mean, s.m2, s.last_ts

    local z = 0
    if n >= 2 then
      local std = math.max(math.sqrt(m2 / (n - 1)), FLOOR)
      z = math.min(math.max((x - mean) / std, -CLIP), CLIP)
    end
    local since = NO_PREVIOUS
    if last_ts then since = math.max(ts - last_ts, 0) end

    local home, best = nil, -1
    for c, k in pairs(s.countries) do
      if k > best or (k == best and bytes_less(c, home)) then home, best = c, k end
    end
    local mismatch = 0
    if home and country ~= home then mismatch = 1 end
    local new_country = s.countries[country] == nil and 1 or 0
    local new_device = s.devices[device] == nil and 1 or 0
    local new_merchant = s.merchants[merchant] == nil and 1 or 0

    -- The day's events up to this one's time (an earlier arrival may carry a later ts), plus
    -- this one.
    local cutoff = ts - DAY
    local values = {n, z, since}
    local counts, sums = {1, 1, 1}, {units, units, units}
    local countries, devices = {[country] = true}, {[device] = true}
    local events = s.events
    for e = 1, #events, 4 do
      local ets = events[e]
      if ets > cutoff and ets <= ts then
        for w = 1, #WINDOWS do
          if ets > ts - WINDOWS[w] then
            counts[w] = counts[w] + 1
            sums[w] = sums[w] + events[e + 1]
          end
        end
        countries[events[e + 2]] = true
        devices[events[e + 3]] = true
      end
    end
    for w = 1, #WINDOWS do values[#values + 1] = counts[w] end
    for w = 1, #WINDOWS do values[#values + 1] = sums[w] / SCALE end
    local n_countries, n_devices = 0, 0
    for _ in pairs(countries) do n_countries = n_countries + 1 end
    for _ in pairs(devices) do n_devices = n_devices + 1 end
    values[#values + 1] = n_countries
    values[#values + 1] = n_devices
    values[#values + 1] = new_merchant
    values[#values + 1] = new_device
    values[#values + 1] = new_country
    values[#values + 1] = mismatch

    local result = struct.pack(PACKED, unpack(values))
    out[i] = result

    if not dry then
      done[tx_id] = result
      local kept, k = {}, 0
      for e = 1, #events, 4 do
        if events[e] > cutoff then
          kept[k + 1], kept[k + 2], kept[k + 3], kept[k + 4] =
            events[e], events[e + 1], events[e + 2], events[e + 3]
          k = k + 4
        end
      end
      kept[k + 1], kept[k + 2], kept[k + 3], kept[k + 4] = ts, units, country, device
      s.events = kept
      local n1 = n + 1
      local delta = x - mean
      local mean1 = mean + delta / n1
      s.n, s.mean, s.m2, s.last_ts = n1, mean1, m2 + delta * (x - mean1), ts
      s.countries[country] = (s.countries[country] or 0) + 1
      s.devices[device] = 1
      s.merchants[merchant] = 1
      touched[user] = true
      redis.call('SET', record_keys[i], result, 'EX', tx_ttl)
    end
  end
end
for user in pairs(touched) do
  redis.call('SET', user_key(user), cmsgpack.pack(users[user]), 'EX', user_ttl)
end
return table.concat(out)
