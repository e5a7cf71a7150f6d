-- fraudpipe online features: one call computes (and records) the stateful features of a
-- whole batch, in order. The semantics are in definition.py; offline.py is the same
-- computation in Python, and tests prove they agree.
--
-- ARGV[1] key prefix   ARGV[2] "1" = dry run (compute only, write nothing)
-- ARGV[3] user-state TTL seconds   ARGV[4] per-transaction record TTL seconds
-- ARGV[5] JSON array of [tx_id, user_id, ts, amount_units, log_amount, country, device, merchant]
-- Returns one string per transaction: the stateful values, "%.17g" each, comma-separated.

local prefix = ARGV[1]
local dry = ARGV[2] == '1'
local user_ttl = tonumber(ARGV[3])
local tx_ttl = tonumber(ARGV[4])
local txs = cjson.decode(ARGV[5])

local DAY, WINDOWS = 86400, {60, 3600, 86400}
local SCALE, NO_PREVIOUS, FLOOR, CLIP = 10000, 1e6, 0.1, 20

local function fmt(x) return string.format('%.17g', x) end

-- Byte-wise string order (Lua's < follows the C locale's collation, which may differ).
local function bytes_less(a, b)
  local la, lb = #a, #b
  for i = 1, math.min(la, lb) do
    local ca, cb = string.byte(a, i), string.byte(b, i)
    if ca ~= cb then return ca < cb end
  end
  return la < lb
end

local out = {}
for i, t in ipairs(txs) do
  local tx_id, user, ts, units, x = t[1], t[2], t[3], t[4], t[5]
  local country, device, merchant = t[6], t[7], t[8]
  local record_key = prefix .. 'tx:' .. tx_id
  local known = redis.call('GET', record_key)
  if known then
    out[i] = known
  else
    local base = prefix .. 'u:{' .. user .. '}:'
    local st_key, ev_key = base .. 'st', base .. 'ev'
    local ctry_key, dev_key, mer_key = base .. 'ctry', base .. 'dev', base .. 'mer'

    local st = redis.call('HMGET', st_key, 'n', 'mean', 'm2', 'last_ts')
    local n = tonumber(st[1]) or 0
    local mean = tonumber(st[2]) or 0
    local m2 = tonumber(st[3]) or 0
    local last_ts = tonumber(st[4])

    local z = 0
    if n >= 2 then
      local std = math.max(math.sqrt(m2 / (n - 1)), FLOOR)
      z = math.min(math.max((x - mean) / std, -CLIP), CLIP)
    end
    local since = NO_PREVIOUS
    if last_ts then since = math.max(ts - last_ts, 0) end

    local counts = redis.call('HGETALL', ctry_key)
    local home, best = nil, -1
    for j = 1, #counts, 2 do
      local c, k = counts[j], tonumber(counts[j + 1])
      if k > best or (k == best and bytes_less(c, home)) then home, best = c, k end
    end
    local mismatch = 0
    if home and country ~= home then mismatch = 1 end
    local new_country = redis.call('HEXISTS', ctry_key, country) == 0 and 1 or 0
    local new_device = redis.call('SISMEMBER', dev_key, device) == 0 and 1 or 0
    local new_merchant = redis.call('SISMEMBER', mer_key, merchant) == 0 and 1 or 0

    -- The day's events (before this one), plus this one.
    local cutoff = ts - DAY
    local day = redis.call('ZRANGEBYSCORE', ev_key, '(' .. fmt(cutoff), fmt(ts), 'WITHSCORES')
    local ev_ts, ev_units, countries, devices = {ts}, {units}, {[country] = true}, {[device] = true}
    for j = 1, #day, 2 do
      local event = cjson.decode(day[j])  -- [tx_id, units, country, device]
      ev_ts[#ev_ts + 1] = tonumber(day[j + 1])
      ev_units[#ev_units + 1] = event[2]
      countries[event[3]] = true
      devices[event[4]] = true
    end
    local values = {n, z, since}
    local sums = {}
    for w = 1, #WINDOWS do
      local lower = ts - WINDOWS[w]
      local count, total = 0, 0
      for j = 1, #ev_ts do
        if ev_ts[j] > lower then
          count = count + 1
          total = total + ev_units[j]
        end
      end
      values[#values + 1] = count
      sums[w] = total / SCALE
    end
    for w = 1, #sums do values[#values + 1] = sums[w] end
    local n_countries, n_devices = 0, 0
    for _ in pairs(countries) do n_countries = n_countries + 1 end
    for _ in pairs(devices) do n_devices = n_devices + 1 end
    values[#values + 1] = n_countries
    values[#values + 1] = n_devices
    values[#values + 1] = new_merchant
    values[#values + 1] = new_device
    values[#values + 1] = new_country
    values[#values + 1] = mismatch

    local parts = {}
    for j = 1, #values do parts[j] = fmt(values[j]) end
    local result = table.concat(parts, ',')
    out[i] = result

    if not dry then
      local member = cjson.encode({tx_id, units, country, device})
      redis.call('ZADD', ev_key, fmt(ts), member)
      redis.call('ZREMRANGEBYSCORE', ev_key, '-inf', fmt(cutoff))
      local n1 = n + 1
      local delta = x - mean
      local mean1 = mean + delta / n1
      local m2_1 = m2 + delta * (x - mean1)
      redis.call('HSET', st_key, 'n', n1, 'mean', fmt(mean1), 'm2', fmt(m2_1), 'last_ts', fmt(ts))
      redis.call('HINCRBY', ctry_key, country, 1)
      redis.call('SADD', dev_key, device)
      redis.call('SADD', mer_key, merchant)
      for _, key in ipairs({st_key, ev_key, ctry_key, dev_key, mer_key}) do
        redis.call('EXPIRE', key, user_ttl)
      end
      redis.call('SET', record_key, result, 'EX', tx_ttl)
    end
  end
end
return out
