--[[
clipmod.lua - an rspamd module that sends every image of a message to clipmodd's
HTTP API (POST /v1/scan) and turns its verdict into symbols with scores.

What it owns: finding the image parts of a message (attachments and inline images,
which is where images referenced by cid: URLs live), the asynchronous requests to
clipmodd (timeout, size limit, retries), reading the JSON verdict, and mapping it:
  CLIPMOD_<CATEGORY>   a category flagged (score per category, or default_score),
                       options: category, score, threshold, image name
  CLIPMOD_FLAGGED      a flagged category the configuration does not list
  CLIPMOD_UNSCANNED    clipmodd could not judge the image (too large, damaged...)
  CLIPMOD_FAIL         clipmodd did not answer (connection, timeout, bad answer)
All symbols are in group "clipmod" so the web UI shows them together.

Configuration: section `clipmod` (local.d/clipmod.conf), see README.md beside this
file. Written for rspamd 3.4 (Debian 12) and later.
]]--

local N = 'clipmod'
local rspamd_http = require "rspamd_http"
local rspamd_logger = require "rspamd_logger"
local ucl = require "ucl"

local settings = {
  url = 'http://127.0.0.1:8093/v1/scan',
  timeout = 10.0,          -- seconds per request
  retries = 1,             -- further attempts after a failed request
  max_size = 20 * 1024 * 1024, -- bytes; larger images are CLIPMOD_UNSCANNED
  min_size = 100,          -- bytes; smaller images (spacers, pixels) are skipped
  max_images = 16,         -- images scanned per message
  token = nil,             -- bearer token (clipmodd http.tokens)
  scan_inline = true,      -- inline images too (those a cid: URL shows), not only attachments
  symbol_prefix = 'CLIPMOD_',
  group = 'clipmod',
  default_score = 5.0,     -- a flagged category not listed in categories
  dynamic_score = false,   -- multiply a category's score by score/threshold
  dynamic_max = 2.0,       -- cap of that multiplier
  unscanned_score = 0.5,
  fail_score = 0.0,
  categories = {},         -- id = score, or id = { score = S, symbol = NAME, description = D }
}

local cat_symbols = {}     -- category id -> symbol name

local function symbol_for(id)
  return settings.symbol_prefix .. string.upper(tostring(id)):gsub('[^%w]', '_')
end

local function sym(suffix)
  return settings.symbol_prefix .. suffix
end

local function image_parts(task)
  local out = {}
  for _, part in ipairs(task:get_parts() or {}) do
    local is_img = part:is_image()
    if not is_img then
      local t = part:get_detected_type() or part:get_type()
      is_img = (t == 'image')
    end
    if is_img and (settings.scan_inline or part:is_attachment()) then
      out[#out + 1] = part
    end
    if #out >= settings.max_images then break end
  end
  return out
end

local function fmt(x)
  if type(x) ~= 'number' then return tostring(x) end
  return string.format('%.4f', x)
end

-- One verdict (a JSON object from clipmodd) into symbols.
local function apply_verdict(task, name, v)
  if type(v) ~= 'table' then
    task:insert_result(sym('FAIL'), 1.0, name, 'bad answer')
    return
  end
  if v.state == 'unscanned' then
    task:insert_result(sym('UNSCANNED'), 1.0, name, tostring(v.reason or 'unknown'))
    return
  end
  if v.state ~= 'flagged' then return end
  for _, c in ipairs(v.categories or {}) do
    if c.flagged then
      local s = cat_symbols[c.id]
      local mult = 1.0
      if settings.dynamic_score and type(c.score) == 'number' and
          type(c.threshold) == 'number' and c.threshold > 0 then
        mult = math.min(settings.dynamic_max, c.score / c.threshold)
      end
      local opts = { tostring(c.id), 'score=' .. fmt(c.score),
                     'threshold=' .. fmt(c.threshold), name }
      if s then
        task:insert_result(s, mult, opts)
      else
        -- Not listed: the default symbol, so the score is not lost.
        task:insert_result(sym('FLAGGED'), mult, opts)
      end
    end
  end
end

local function scan_part(task, part, idx)
  local name = part:get_filename() or string.format('part%d', idx)
  local content = part:get_content()
  local len = content and #content or 0
  if len < settings.min_size then return end
  if len > settings.max_size then
    task:insert_result(sym('UNSCANNED'), 1.0, name, 'too-large')
    return
  end
  local attempts = 0
  local headers = {}
  if settings.token then headers['Authorization'] = 'Bearer ' .. settings.token end
  local url = settings.url .. (settings.url:find('?', 1, true) and '&' or '?') ..
      'name=' .. name:gsub('[^%w%._-]', function(ch)
        return string.format('%%%02X', string.byte(ch)) end)

  local function request()
    attempts = attempts + 1
    local function cb(err, code, body)
      if err or (code and code >= 500) then
        if attempts <= settings.retries then
          rspamd_logger.infox(task, '%s: %s failed (%s), retrying', N, name, err or code)
          request()
          return
        end
        rspamd_logger.errx(task, '%s: cannot scan %s: %s', N, name, err or ('HTTP ' .. code))
        task:insert_result(sym('FAIL'), 1.0, name, tostring(err or ('HTTP ' .. code)))
        return
      end
      if code ~= 200 and code ~= 422 then
        task:insert_result(sym('FAIL'), 1.0, name, 'HTTP ' .. tostring(code))
        return
      end
      local parser = ucl.parser()
      local ok, perr = parser:parse_string(tostring(body))
      if not ok then
        rspamd_logger.errx(task, '%s: bad JSON for %s: %s', N, name, perr)
        task:insert_result(sym('FAIL'), 1.0, name, 'bad JSON')
        return
      end
      apply_verdict(task, name, parser:get_object())
    end
    rspamd_http.request({
      task = task,
      url = url,
      method = 'POST',
      body = content,
      mime_type = 'application/octet-stream',
      headers = headers,
      timeout = settings.timeout,
      callback = cb,
    })
  end
  request()
end

local function clipmod_check(task)
  for i, part in ipairs(image_parts(task)) do
    scan_part(task, part, i)
  end
end

-- Configuration and registration.
local opts = rspamd_config:get_all_opt(N)
if not opts then
  rspamd_logger.infox(rspamd_config, '%s: no configuration, module disabled', N)
  return
end
for k, v in pairs(opts) do settings[k] = v end
if settings.enabled == false then
  rspamd_logger.infox(rspamd_config, '%s: disabled', N)
  return
end

local parent = rspamd_config:register_symbol({
  name = sym('CHECK'),
  type = 'callback',
  callback = clipmod_check,
  group = settings.group,
  flags = 'nice',
})
rspamd_config:set_metric_symbol({ name = sym('CHECK'), score = 0.0, group = settings.group,
  description = 'clipmod image scan' })

local function virtual(name, score, desc)
  rspamd_config:register_symbol({ name = name, type = 'virtual', parent = parent,
    group = settings.group, score = score })
  rspamd_config:set_metric_symbol({ name = name, score = score, group = settings.group,
    description = desc })
end

virtual(sym('FLAGGED'), settings.default_score, 'clipmod: image flagged (unlisted category)')
virtual(sym('UNSCANNED'), settings.unscanned_score, 'clipmod: image could not be scanned')
virtual(sym('FAIL'), settings.fail_score, 'clipmod: clipmodd did not answer')
for id, c in pairs(settings.categories) do
  local score, name, desc = settings.default_score, nil, nil
  if type(c) == 'number' then
    score = c
  elseif type(c) == 'table' then
    score = c.score or score
    name = c.symbol
    desc = c.description
  end
  name = name or symbol_for(id)
  cat_symbols[id] = name
  virtual(name, score, desc or ('clipmod: image flagged as ' .. id))
end
