// linli web shell: one app for every feature a township installed.
//
// Plain ES module, no build step. Every text from the server is put into the page with
// textContent (never innerHTML), so nothing a plugin or a resident writes can become markup.
// Plugin pages arrive as JSON in the page schema (application/vnd.linli.page+json), already
// checked by the host; this file draws them.

const PAGE_TYPE = 'application/vnd.linli.page+json';

const S = {
  token: localStorage.getItem('linli.token'),
  lang: localStorage.getItem('linli.lang') || 'zh',
  elder: localStorage.getItem('linli.elder') === '1',
  me: null,
  /** The notice of a plugin's redirect, for the page it leads to. */
  carried: null,
};

// ---- texts -----------------------------------------------------------------------------

const T = {
  zh: {
    app: '邻里', skip: '跳到正文', readAloud: '朗读', stopReading: '停止朗读', elder: '长辈模式',
    langSwitch: 'English', tools: '工具', mainMenu: '主菜单', loading: '加载中…',
    home: '首页', inbox: '消息', myData: '我的数据', admin: '管理', signOut: '退出',
    signIn: '登录', phone: '手机号', password: '密码', byPassword: '密码登录', byCode: '短信验证码登录',
    sendCode: '发送验证码', code: '验证码', codeSent: '如该号码已登记，验证码已发送。',
    totpTitle: '管理员二次验证', totpCode: '动态口令（6 位）', verify: '验证',
    enrolTitle: '首次登录：登记您的动态口令', enrolIntro: '请输入县级管理员当面交给您的激活码，并设置您自己的新密码。',
    activationCode: '激活码（如 ABCD-EFGH-JKMN）', newPassword: '新密码（至少 8 位，含字母、数字、符号中的两类）', enrolNext: '下一步',
    enrolSecretTitle: '把这个动态口令加入您的验证器', enrolSecret: '在验证器应用中添加账号，输入以下密钥；或在本机点下面的按钮直接打开验证器。密钥只显示这一次，请勿告诉他人：',
    enrolOpenApp: '在本机的验证器中打开', enrolConfirm: '再输入验证器显示的 6 位动态口令，完成登记：',
    badLink: '这个链接不在本服务之内，已拦截。',
    features: '本村社的服务', featuresAt: '{place}的服务', noFeatures: '本村社还没有安装服务。', welcome: '您好',
    assisted: '帮办模式：正在为 {name} 办理（{reason}）', endAssist: '结束帮办',
    noMessages: '没有消息。', unread: '未读', urgent: '紧急', openIt: '查看', profile: '我的资料', dataUse: '谁使用了我的数据',
    noDataUse: '还没有插件或工作人员使用过您的个人数据。', exportData: '下载我的全部数据',
    when: '时间', who: '谁', plugin: '插件', action: '操作', fields: '字段', masked: '（脱敏）',
    assistNoExport: '帮办时不能下载居民的全部数据；请居民本人下载，或到村（社区）服务窗口办理。',
    lastUse: '最近一次', times: '次数', useSince: '（最早 {first}）', youSelf: '您本人', bySystem: '系统',
    byAdmin: '管理员', assistedBy: '{who}（{by} 帮办）', useNewest: '只显示最近 200 条记录；全部记录可下载。',
    'use_identity.get-profile': '读取您的资料', 'use_identity.list-residents': '在居民名单中查看您',
    'use_auth.sign-in': '登录', 'use_person.create': '登记您的信息', 'use_person.view': '查看您的资料',
    'use_person.export': '导出您的数据', 'use_person.erase': '删除您的数据', 'use_person.import': '名单导入',
    'use_assist.start': '开始帮办', 'use_device.create': '登记您的设备', 'use_device.update': '修改您的设备',
    'use_role.assign': '授予角色', 'use_role.revoke': '撤销角色', 'use_auth.password-set': '设置密码',
    'use_auth.password-change': '修改密码', 'use_auth.unlock': '解除锁定', 'use_auth.totp-enrol': '绑定动态口令',
    full: '完整', error: '出错了', back: '返回', notFound: '没有这个页面。', retry: '重试',
    confirm: '确定吗？', submit: '提交', required: '必填', signedOutExpired: '登录已过期，请重新登录。',
    tenants: '组织架构', people: '居民', plugins: '插件', audit: '审计日志', assist: '帮办代办',
    devices: '设备', deviceName: '名称', importDevices: '导入设备清单（CSV 或 XLSX）', addDevice: '登记设备', deviceId: '设备编号',
    kind: '类型', location: '位置', vendor: '厂商', model: '型号', wearer: '使用人（居民编号，个人设备）',
    lastSeen: '最近上报', secretOnce: '设备密钥（只显示这一次，请写入设备）：', rotateSecret: '更换密钥',
    commands: '指令记录', noCommands: '还没有发给这台设备的指令。', online: '在线', offline: '离线', command: '指令', outcome: '结果',
    st_active: '启用', st_disabled: '停用', st_suspended: '已暂停', st_sent: '已发出，等待应答', st_acknowledged: '已执行',
    st_refused: '设备拒绝', 'st_timed-out': '超时未应答',
    importRoster: '导入居民名单（CSV 或 XLSX）', import: '导入', imported: '已导入：新增 {c}，更新 {u}，未变 {n}。',
    importErrors: '有 {n} 处错误，未导入任何数据：', row: '行', column: '列', message: '说明',
    install: '安装或升级插件（.wasm）', grantRequired: '同意授予必需权限', installed: '已安装',
    upgraded: '已升级', unchanged: '未变化', grants: '授权', purpose: '用途', requiredCap: '必需',
    optionalCap: '可选', capGranted: '已授予', capNotGranted: '未授予',
    grantedCount: '已授予 {granted} / {total} 项', grant: '授予', revoke: '撤销', suspend: '暂停', resume: '恢复',
    uninstall: '卸载', status: '状态', version: '版本', asks: '插件请求以下权限：',
    diffAdded: '新版本新增请求：', diffRemoved: '新版本不再请求（其授权失效）：', verifyChain: '校验审计链', chainOk: '审计日志完整：{n} 条记录',
    chainBroken: '审计日志被篡改：{m}', resident: '居民手机号（或编号）', reason: '事由', minutes: '时长（分钟）',
    startAssist: '开始帮办', place: '村社', choosePlace: '选择村社', name: '姓名',
    idNumber: '身份证号', birth: '出生日期', household: '户', address: '地址', tags: '标签',
    personId: '编号', tag_elderly: '老年人', 'tag_living-alone': '独居', tag_disabled: '残疾人',
    'tag_party-member': '党员', tag_veteran: '退役军人', 'tag_low-income': '低收入', 'tag_special-care': '特殊关爱',
    more: '更多', openFeature: '打开', uninstallConfirm: '卸载后该插件的数据仍保留。确定卸载？',
    none: '无',
  },
  en: {
    app: 'linli', skip: 'Skip to content', readAloud: 'Read aloud', stopReading: 'Stop reading',
    elder: 'Elder mode', langSwitch: '中文', tools: 'Tools', mainMenu: 'Main menu', loading: 'Loading…',
    home: 'Home', inbox: 'Inbox', myData: 'My data', admin: 'Admin', signOut: 'Sign out',
    signIn: 'Sign in', phone: 'Mobile number', password: 'Password', byPassword: 'Password',
    byCode: 'SMS code', sendCode: 'Send code', code: 'Code',
    codeSent: 'If the number is registered, a code has been sent.',
    totpTitle: 'Admin second factor', totpCode: 'Authenticator code (6 digits)', verify: 'Verify',
    enrolTitle: 'First sign-in: enrol your authenticator', enrolIntro: 'Enter the activation code the county administrator gave you in person, and set a new password of your own.',
    activationCode: 'Activation code (like ABCD-EFGH-JKMN)', newPassword: 'New password (8+ characters, two of letters, digits, symbols)', enrolNext: 'Next',
    enrolSecretTitle: 'Add this authenticator', enrolSecret: 'In your authenticator app, add an account with this key, or tap the button below on this phone. The key is shown only this once; tell nobody:',
    enrolOpenApp: 'Open in this phone\'s authenticator', enrolConfirm: 'Then enter the 6-digit code it shows to finish:',
    badLink: 'That link leads outside this service and was blocked.',
    features: 'Services here', featuresAt: 'Services in {place}', noFeatures: 'No services are installed here yet.', welcome: 'Hello',
    assisted: 'Assisted mode: acting for {name} ({reason})', endAssist: 'End assisted mode',
    noMessages: 'No messages.', unread: 'unread', urgent: 'urgent', openIt: 'Open', profile: 'My profile', dataUse: 'Who used my data',
    noDataUse: 'No plugin or staff member has used your personal data yet.',
    exportData: 'Download all my data', when: 'When', who: 'Who', plugin: 'Plugin',
    action: 'Action', fields: 'Fields', masked: '(masked)', full: 'full',
    assistNoExport: 'Not in assisted mode: the resident downloads their data themself, or at the service counter.',
    lastUse: 'Last', times: 'Times', useSince: '(first {first})', youSelf: 'You', bySystem: 'System',
    byAdmin: 'Administrator', assistedBy: '{who} (assisted by {by})', useNewest: 'The latest 200 records only; download them all.',
    'use_identity.get-profile': 'read your profile', 'use_identity.list-residents': 'saw you in the residents list',
    'use_auth.sign-in': 'signed in', 'use_person.create': 'registered you', 'use_person.view': 'viewed your record',
    'use_person.export': 'exported your data', 'use_person.erase': 'erased your data', 'use_person.import': 'roster import',
    'use_assist.start': 'started assisting', 'use_device.create': 'registered your device', 'use_device.update': 'changed your device',
    'use_role.assign': 'gave a role', 'use_role.revoke': 'took a role away', 'use_auth.password-set': 'set the password',
    'use_auth.password-change': 'changed the password', 'use_auth.unlock': 'unlocked sign-in', 'use_auth.totp-enrol': 'enrolled an authenticator', error: 'Something went wrong',
    back: 'Back', notFound: 'No such page.', retry: 'Retry', confirm: 'Are you sure?',
    submit: 'Submit', required: 'required', signedOutExpired: 'Your session ended; please sign in again.',
    tenants: 'Places', people: 'Residents', plugins: 'Plugins', audit: 'Audit log',
    devices: 'Devices', deviceName: 'Name', importDevices: 'Import a device list (CSV or XLSX)', addDevice: 'Register a device', deviceId: 'Device id',
    kind: 'Kind', location: 'Location', vendor: 'Vendor', model: 'Model', wearer: 'Wearer (resident id, personal devices)',
    lastSeen: 'Last message', secretOnce: 'Device secret (shown only this once; put it into the device):', rotateSecret: 'New secret',
    commands: 'Commands', noCommands: 'No commands sent to this device yet.', online: 'online', offline: 'offline', command: 'Command', outcome: 'Outcome',
    st_active: 'active', st_disabled: 'disabled', st_suspended: 'suspended', st_sent: 'sent, awaiting an answer', st_acknowledged: 'carried out',
    st_refused: 'refused by the device', 'st_timed-out': 'timed out',
    assist: 'Assisted mode', importRoster: 'Import the roster (CSV or XLSX)', import: 'Import',
    imported: 'Imported: {c} new, {u} updated, {n} unchanged.',
    importErrors: '{n} errors; nothing was imported:', row: 'Row', column: 'Column',
    message: 'Message', install: 'Install or upgrade a plugin (.wasm)',
    grantRequired: 'Grant what it requires', installed: 'Installed', upgraded: 'Upgraded',
    unchanged: 'Unchanged', grants: 'Grants', purpose: 'Purpose', requiredCap: 'required',
    optionalCap: 'optional', capGranted: 'granted', capNotGranted: 'not granted',
    grantedCount: '{granted} of {total} granted', grant: 'Grant', revoke: 'Revoke', suspend: 'Suspend',
    resume: 'Resume', uninstall: 'Uninstall', status: 'Status', version: 'Version',
    asks: 'The plugin asks for:', diffAdded: 'The new version also asks for:',
    diffRemoved: 'No longer asked for (their grants lapse):',
    verifyChain: 'Verify the audit chain', chainOk: 'Audit log intact: {n} records',
    chainBroken: 'Audit log broken: {m}', resident: 'Phone of the resident (or id)', reason: 'Reason',
    minutes: 'Minutes', startAssist: 'Start assisting', place: 'Place', choosePlace: 'Choose a place',
    name: 'Name', idNumber: 'ID number', birth: 'Birth date', household: 'Household',
    address: 'Address', tags: 'Tags', personId: 'ID', tag_elderly: 'elderly',
    'tag_living-alone': 'living alone', tag_disabled: 'disabled', 'tag_party-member': 'party member',
    tag_veteran: 'veteran', 'tag_low-income': 'low income', 'tag_special-care': 'special care', more: 'More', openFeature: 'Open',
    uninstallConfirm: 'Its data stays. Uninstall?', none: 'none',
  },
};

function t(key, vars) {
  let s = (T[S.lang] && T[S.lang][key]) || T.zh[key] || key;
  for (const [k, v] of Object.entries(vars || {})) s = s.replace(`{${k}}`, String(v));
  return s;
}

/** A page-schema text: a string, or {zh, en}. */
function txt(v) {
  if (v == null) return '';
  if (typeof v === 'string') return v;
  return S.lang === 'en' ? (v.en || v.zh || '') : (v.zh || v.en || '');
}

/** Pick the reader's language from a pair of fields (title_zh/title_en). */
function pick(obj, base) {
  return S.lang === 'en' ? (obj[`${base}_en`] || obj[`${base}_zh`]) : (obj[`${base}_zh`] || obj[`${base}_en`]);
}

// ---- DOM -------------------------------------------------------------------------------

/** Make an element. `attrs`: class, text, on<event>, and any attribute; children: nodes or text. */
function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v == null || v === false) continue;
    if (k === 'class') el.className = v;
    else if (k === 'text') el.textContent = v;
    else if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else if (v === true) el.setAttribute(k, '');
    else el.setAttribute(k, String(v));
  }
  for (const c of children.flat(Infinity)) {
    if (c == null || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

const main = () => document.getElementById('main');

function show(...nodes) {
  // A newer navigation is waiting: this view is out of date, so it does not draw over it.
  if (routing.pending) return;
  const m = main();
  m.replaceChildren(...nodes.flat().filter(Boolean));
  stopReading();
}

function fmtTime(ms) {
  return new Date(ms).toLocaleString(S.lang === 'en' ? 'en-GB' : 'zh-CN', { hour12: false });
}

function notice(tone, text) {
  return h('div', { class: `notice ${tone}`, role: tone === 'error' ? 'alert' : 'status' }, text);
}

// ---- where a signed-in request may go ----------------------------------------------------

/** A tenant or plugin id. */
const ID = /^[a-z0-9][a-z0-9-]{0,62}$/;
const enc = encodeURIComponent;

/** Whether `p` is a path inside a plugin, by the host's own rule (`linli_ui::is_plugin_path`):
 * `/` and no second `/` at the start, no backslash, whitespace or control character, and in
 * the path part no `.` or `..` segment in any encoding and no escaped `/`, `\`, `%` or
 * control character. */
function isPluginPath(p) {
  if (typeof p !== 'string' || !p.startsWith('/') || p.startsWith('//')) return false;
  if (/[\\\s\u0000-\u001f\u007f]/.test(p)) return false;
  const path = p.split(/[?#]/)[0];
  for (let i = 0; i < path.length; i++) {
    if (path[i] !== '%') continue;
    const hex = path.slice(i + 1, i + 3);
    if (!/^[0-9a-fA-F]{2}$/.test(hex)) return false;
    const c = parseInt(hex, 16);
    if (c === 0x2f || c === 0x5c || c === 0x25 || c < 0x20 || c === 0x7f) return false;
    i += 2;
  }
  return !path.split('/').some((seg) => {
    const plain = seg.replace(/%2e/gi, '.');
    return plain === '.' || plain === '..';
  });
}

/** The URL of `p` inside the plugin at `base` (`/t/{tenant}/p/{plugin}`), or null when — as the
 * browser resolves it — it would land anywhere else: the API, another plugin, another site. */
function pluginUrl(base, p) {
  if (!isPluginPath(p)) return null;
  let u;
  try { u = new URL(base + p, location.origin); } catch { return null; }
  if (u.origin !== location.origin || !(u.pathname === base || u.pathname.startsWith(`${base}/`))) return null;
  return u.pathname + u.search;
}

// ---- server ----------------------------------------------------------------------------

class ApiError extends Error {
  constructor(status, body) {
    super((body && body.error && body.error.message) || `HTTP ${status}`);
    this.status = status;
    this.body = body;
  }
}

async function call(method, url, { body, headers, raw } = {}) {
  // The reader's token goes only to this origin's API and plugin gateway.
  const target = new URL(url, location.origin);
  if (target.origin !== location.origin) throw new ApiError(0, null);
  const hs = { 'Accept-Language': S.lang === 'en' ? 'en' : 'zh-CN', ...(headers || {}) };
  if (S.token && (target.pathname.startsWith('/api/v1/') || target.pathname.startsWith('/t/'))) {
    hs.Authorization = `Bearer ${S.token}`;
  }
  let payload = body;
  if (body !== undefined && !raw) {
    hs['Content-Type'] = 'application/json';
    payload = JSON.stringify(body);
  }
  const r = await fetch(url, { method, headers: hs, body: payload });
  const type = r.headers.get('content-type') || '';
  const data = type.includes('json') ? await r.json().catch(() => null) : await r.text();
  // The session ended — said by the host itself (its API, or its `WWW-Authenticate` on the
  // gateway), never by a plugin's page, which cannot sign its reader out.
  const hostSaid = target.pathname.startsWith('/api/v1/') || r.headers.has('www-authenticate');
  if (r.status === 401 && S.token && hostSaid && !target.pathname.startsWith('/api/v1/auth/')) {
    signOutLocally();
    location.hash = '#/signin?expired=1';
    throw new ApiError(401, data);
  }
  return { status: r.status, ok: r.ok, type, data };
}

async function api(method, url, body) {
  const r = await call(method, url, { body });
  if (!r.ok) throw new ApiError(r.status, r.data);
  return r.data;
}

function signOutLocally() {
  S.token = null;
  S.me = null;
  localStorage.removeItem('linli.token');
}

async function loadMe() {
  if (!S.token) return null;
  if (S.me) return S.me;
  try {
    S.me = await api('GET', '/api/v1/me');
  } catch (e) {
    if (e.status === 401) signOutLocally();
    S.me = null;
  }
  return S.me;
}

const ADMIN_ROLES = ['system-admin', 'security-admin', 'audit-admin', 'township-admin', 'county-admin', 'community-staff', 'grid-worker'];
const isStaff = (me) => me && me.roles.some((r) => ADMIN_ROLES.includes(r.role));

// ---- chrome ----------------------------------------------------------------------------

function applyChrome() {
  document.documentElement.lang = S.lang === 'en' ? 'en' : 'zh-CN';
  document.documentElement.classList.toggle('elder', S.elder);
  document.title = t('app') === 'linli' ? 'linli' : '邻里 linli';
  document.getElementById('skip').textContent = t('skip');
  document.getElementById('brand').textContent = t('app');
  document.getElementById('tools').setAttribute('aria-label', t('tools'));
  document.getElementById('menu').setAttribute('aria-label', t('mainMenu'));
  const elder = document.getElementById('elder-toggle');
  elder.textContent = t('elder');
  elder.setAttribute('aria-pressed', String(S.elder));
  const lang = document.getElementById('lang-toggle');
  lang.textContent = t('langSwitch');
  lang.lang = S.lang === 'en' ? 'zh-CN' : 'en';
  const read = document.getElementById('read-aloud');
  read.hidden = !('speechSynthesis' in window);
  read.textContent = reading ? t('stopReading') : t('readAloud');
  document.getElementById('foot').textContent = S.lang === 'en'
    ? 'linli — one community app for the county. Offline and assisted service stay open at your village office.'
    : '邻里 — 全县一个社区应用。线下窗口和帮办代办服务照常开放。';
}

function menu(current) {
  const me = S.me;
  const items = [];
  if (me) {
    items.push(['#/', t('home')], ['#/inbox', t('inbox')], ['#/me', t('myData')]);
    if (isStaff(me) && !me.acting_for) items.push(['#/admin', t('admin')]);
  }
  const nav = document.getElementById('menu');
  nav.replaceChildren(...items.map(([href, label]) => h('a', {
    href, 'aria-current': current === href ? 'page' : null,
  }, label)));
  if (me) {
    nav.append(h('a', { href: '#/signout' }, t('signOut')));
  }
  nav.hidden = items.length === 0;
}

let reading = false;
function stopReading() {
  if ('speechSynthesis' in window) speechSynthesis.cancel();
  reading = false;
  const b = document.getElementById('read-aloud');
  if (b) b.textContent = t('readAloud');
}

function readAloud() {
  if (!('speechSynthesis' in window)) return;
  if (reading) return stopReading();
  const u = new SpeechSynthesisUtterance(main().innerText);
  u.lang = S.lang === 'en' ? 'en-US' : 'zh-CN';
  u.rate = S.elder ? 0.85 : 1;
  u.onend = () => stopReading();
  reading = true;
  document.getElementById('read-aloud').textContent = t('stopReading');
  speechSynthesis.speak(u);
}

// ---- the page renderer -----------------------------------------------------------------

/** Draw a plugin page (already checked by the host) for plugin `base` (`/t/x/p/y`). */
function renderPage(page, ctx) {
  const nodes = [];
  if (page.nav && page.nav.length) {
    nodes.push(h('nav', { class: 'pluginnav', 'aria-label': txt(page.title) },
      page.nav.map((n) => h('a', { class: 'btn', href: ctx.href(n.path) }, txt(n.label)))));
  }
  if (page.notice) nodes.push(notice(page.notice.tone, txt(page.notice.text)));
  nodes.push(...blocks(page.body || [], ctx, 1));
  return nodes;
}

function blocks(list, ctx, depth) {
  return list.map((b) => block(b, ctx, depth));
}

function block(b, ctx, depth) {
  switch (b.type) {
    case 'heading': return h(`h${Math.min(3, Math.max(1, b.level))}`, {}, txt(b.text));
    case 'text': return h('p', { class: b.style && b.style !== 'normal' ? b.style : null }, txt(b.text));
    case 'list': return h('ul', { class: 'items' }, b.items.map((it) => {
      const inner = [
        h('div', { class: 'title' }, txt(it.title), it.badge ? h('span', { class: 'badge' }, txt(it.badge)) : null),
        it.subtitle ? h('div', { class: 'sub' }, txt(it.subtitle)) : null,
      ];
      return h('li', {}, it.path ? h('a', { href: ctx.href(it.path) }, inner) : h('div', {}, inner));
    }));
    case 'facts': return h('dl', { class: 'facts' }, b.items.map((f) => [h('dt', {}, txt(f.label)), h('dd', {}, txt(f.value))]));
    case 'card': {
      const level = Math.min(3, depth + 1);
      const body = [h(`h${level}`, {}, txt(b.title)), ...blocks(b.body, ctx, depth + 1)];
      return b.path ? h('a', { class: 'card', href: ctx.href(b.path) }, body) : h('section', { class: 'card' }, body);
    }
    case 'table': return table(b.columns.map(txt), b.rows.map((r) => r.map(txt)));
    case 'form': return pageForm(b, ctx);
    case 'actions': return h('div', { class: 'actions' }, b.buttons.map((btn) => button(btn, ctx)));
    case 'image': return h('img', { class: 'block', src: ctx.src(b.src), alt: txt(b.alt), loading: 'lazy' });
    case 'progress': {
      const pct = b.max > 0 ? Math.round((b.value / b.max) * 100) : 0;
      return h('div', { class: 'progress' },
        h('div', { class: 'label' }, h('span', {}, txt(b.label)), h('span', {}, `${b.value} / ${b.max}（${pct}%）`)),
        h('progress', { max: String(b.max || 1), value: String(b.value), 'aria-label': txt(b.label) }),
        b.detail ? h('div', { class: 'sub muted' }, txt(b.detail)) : null);
    }
    case 'tabs': return tabs(b, ctx, depth);
    case 'empty': return h('p', { class: 'empty' }, txt(b.text));
    case 'error': return notice('error', txt(b.text));
    case 'notice': return notice(b.tone, txt(b.text));
    default: return null;
  }
}

let uid = 0;
function tabs(b, ctx, depth) {
  const id = `tabs${++uid}`;
  const list = h('div', { role: 'tablist' });
  const panels = b.tabs.map((tab, i) => h('div', {
    role: 'tabpanel', id: `${id}-p${i}`, 'aria-labelledby': `${id}-t${i}`, hidden: i !== 0,
  }, blocks(tab.body, ctx, depth + 1)));
  const buttons = b.tabs.map((tab, i) => h('button', {
    type: 'button', role: 'tab', id: `${id}-t${i}`, 'aria-controls': `${id}-p${i}`,
    'aria-selected': String(i === 0), tabindex: i === 0 ? '0' : '-1',
    onclick: () => select(i),
    onkeydown: (e) => {
      if (e.key === 'ArrowRight') select((i + 1) % b.tabs.length, true);
      if (e.key === 'ArrowLeft') select((i - 1 + b.tabs.length) % b.tabs.length, true);
    },
  }, txt(tab.label)));
  function select(n, focus) {
    buttons.forEach((bt, i) => { bt.setAttribute('aria-selected', String(i === n)); bt.tabIndex = i === n ? 0 : -1; });
    panels.forEach((p, i) => { p.hidden = i !== n; });
    if (focus) buttons[n].focus();
  }
  list.append(...buttons);
  return h('div', { class: 'tabs' }, list, panels);
}

function button(btn, ctx) {
  const cls = `btn ${btn.style || 'default'}`;
  if ((btn.method || 'get') === 'get') return h('a', { class: cls, href: ctx.href(btn.path) }, txt(btn.label));
  return h('button', {
    type: 'button', class: cls,
    onclick: async () => {
      if (btn.confirm && !confirm(txt(btn.confirm))) return;
      await ctx.post(btn.path, btn.body ?? {});
    },
  }, txt(btn.label));
}

function pageForm(f, ctx) {
  const form = h('form', { class: 'page-form', novalidate: true });
  const controls = [];
  for (const field of f.fields) {
    const id = `f${++uid}-${field.name}`;
    const help = field.help ? h('span', { class: 'help', id: `${id}-help` }, txt(field.help)) : null;
    const err = h('span', { class: 'field-error', id: `${id}-err`, role: 'alert' });
    const describedBy = [help ? `${id}-help` : null, `${id}-err`].filter(Boolean).join(' ');
    const label = [txt(field.label), field.required ? h('span', { class: 'help' }, ` （${t('required')}）`) : null];
    let wrap;
    let get;
    const value = field.value;
    switch (field.kind) {
      case 'hidden':
        get = () => value ?? '';
        controls.push({ field, get, err: null });
        continue;
      case 'radio':
      case 'multi': {
        const type = field.kind === 'radio' ? 'radio' : 'checkbox';
        const chosen = Array.isArray(value) ? value : value != null ? [String(value)] : [];
        const inputs = field.options.map((o) => h('input', {
          type, name: id, value: o.value, checked: chosen.includes(o.value),
        }));
        wrap = h('fieldset', { 'aria-describedby': describedBy }, h('legend', {}, label),
          field.options.map((o, i) => h('label', {}, inputs[i], txt(o.label))), help, err);
        get = () => {
          const on = inputs.filter((i) => i.checked).map((i) => i.value);
          return field.kind === 'radio' ? (on[0] ?? '') : on;
        };
        break;
      }
      case 'checkbox': {
        const input = h('input', { type: 'checkbox', id, checked: value === true, 'aria-describedby': describedBy });
        wrap = h('div', {}, h('label', { for: id, class: 'row' }, input, label), help, err);
        get = () => input.checked;
        break;
      }
      case 'select': {
        const sel = h('select', { id, required: field.required, 'aria-describedby': describedBy },
          h('option', { value: '' }, '—'),
          field.options.map((o) => h('option', { value: o.value, selected: String(value) === o.value }, txt(o.label))));
        wrap = h('div', {}, h('label', { for: id }, label), sel, help, err);
        get = () => sel.value;
        break;
      }
      default: {
        const types = { text: 'text', number: 'number', date: 'date', datetime: 'datetime-local', phone: 'tel' };
        const attrs = {
          id, name: field.name, required: field.required, 'aria-describedby': describedBy,
          maxlength: field.max_length, value: value != null ? String(value) : null,
        };
        if (field.kind === 'number') Object.assign(attrs, { min: field.min, max: field.max, step: 'any', inputmode: 'decimal' });
        if (field.kind === 'phone') Object.assign(attrs, { inputmode: 'numeric', pattern: '1[0-9]{10}', autocomplete: 'tel' });
        const input = field.kind === 'textarea'
          ? h('textarea', attrs, value != null ? String(value) : '')
          : h('input', { type: types[field.kind] || 'text', ...attrs });
        wrap = h('div', {}, h('label', { for: id }, label), input, help, err);
        get = () => input.value;
      }
    }
    controls.push({ field, get, err });
    form.append(wrap);
  }
  form.append(h('div', { class: 'actions' }, h('input', { type: 'submit', value: txt(f.submit) })));
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    const values = {};
    let ok = true;
    for (const c of controls) {
      const v = c.get();
      values[c.field.name] = v;
      if (c.err) c.err.textContent = '';
      const empty = v === '' || (Array.isArray(v) && v.length === 0) || v === false;
      if (c.field.required && empty && c.err) {
        c.err.textContent = ` ${t('required')}`;
        ok = false;
      }
    }
    if (!ok) return;
    const answer = await ctx.post(f.action, values);
    // A plugin answering 422 with field errors: show them next to the fields.
    const errors = answer && answer.data && answer.data.error && answer.data.error.fields;
    if (Array.isArray(errors)) {
      for (const fe of errors) {
        const c = controls.find((x) => x.field.name === fe.field);
        if (c && c.err) c.err.textContent = ` ${txt(fe.message)}`;
      }
    }
  });
  return form;
}

// ---- views -----------------------------------------------------------------------------

async function viewSignIn(params) {
  let mode = 'password';
  const box = h('div');
  const draw = () => {
    const phone = h('input', { id: 'phone', type: 'tel', inputmode: 'numeric', autocomplete: 'username', required: true });
    const msg = h('div', { 'aria-live': 'polite' });
    let form;
    if (mode === 'password') {
      const pw = h('input', { id: 'password', type: 'password', autocomplete: 'current-password', required: true });
      form = h('form', { class: 'shell-form', onsubmit: async (e) => {
        e.preventDefault();
        await finishSignIn(call('POST', '/api/v1/auth/password', { body: { phone: phone.value.trim(), password: pw.value } }), msg);
      } },
      h('label', { for: 'phone' }, t('phone')), phone,
      h('label', { for: 'password' }, t('password')), pw,
      h('input', { type: 'submit', value: t('signIn') }));
    } else {
      const code = h('input', { id: 'code', inputmode: 'numeric', autocomplete: 'one-time-code' });
      form = h('form', { class: 'shell-form', onsubmit: async (e) => {
        e.preventDefault();
        await finishSignIn(call('POST', '/api/v1/auth/code', { body: { phone: phone.value.trim(), code: code.value.trim() } }), msg);
      } },
      h('label', { for: 'phone' }, t('phone')), phone,
      h('div', { class: 'actions' }, h('button', { type: 'button', class: 'btn', onclick: async () => {
        const r = await call('POST', '/api/v1/auth/code/send', { body: { phone: phone.value.trim() } });
        msg.replaceChildren(r.ok ? notice('info', t('codeSent')) : notice('error', errorText(r)));
      } }, t('sendCode'))),
      h('label', { for: 'code' }, t('code')), code,
      h('input', { type: 'submit', value: t('signIn') }));
    }
    box.replaceChildren(
      h('div', { class: 'actions', role: 'group' },
        h('button', { type: 'button', class: `btn ${mode === 'password' ? 'primary' : ''}`, 'aria-pressed': String(mode === 'password'), onclick: () => { mode = 'password'; draw(); } }, t('byPassword')),
        h('button', { type: 'button', class: `btn ${mode === 'code' ? 'primary' : ''}`, 'aria-pressed': String(mode === 'code'), onclick: () => { mode = 'code'; draw(); } }, t('byCode'))),
      form, msg);
  };
  draw();
  show(h('h1', {}, t('signIn')), params.get('expired') ? notice('warning', t('signedOutExpired')) : null, box);
}

function errorText(r) {
  return (r.data && r.data.error && r.data.error.message) || `${t('error')} (HTTP ${r.status})`;
}

async function finishSignIn(pending, msg) {
  const r = await pending;
  if (!r.ok) {
    msg.replaceChildren(notice('error', errorText(r)));
    return;
  }
  if (r.data.stage === 'totp_required' || r.data.stage === 'totp_enrol') {
    const code = h('input', { id: 'totp', inputmode: 'numeric', autocomplete: 'one-time-code', required: true });
    const m2 = h('div', { 'aria-live': 'polite' });
    // Enrolling: the new authenticator's key, shown to its holder this once.
    const enrol = r.data.stage === 'totp_enrol' ? [
      h('h2', {}, t('enrolSecretTitle')), h('p', {}, t('enrolSecret')),
      h('p', { class: 'secret', id: 'totp-secret' }, r.data.secret.replace(/(.{4})(?=.)/g, '$1 ')),
      h('p', {}, h('a', { class: 'btn', href: r.data.otpauth_url }, t('enrolOpenApp'))),
      h('p', {}, t('enrolConfirm')),
    ] : [];
    show(h('h1', {}, t(enrol.length ? 'enrolTitle' : 'totpTitle')), ...enrol, h('form', { class: 'shell-form', onsubmit: async (e) => {
      e.preventDefault();
      await finishSignIn(call('POST', '/api/v1/auth/totp', { body: { challenge: r.data.challenge, code: code.value.trim() } }), m2);
    } }, h('label', { for: 'totp' }, t('totpCode')), code, h('input', { type: 'submit', value: t('verify') })), m2);
    code.focus();
    return;
  }
  if (r.data.stage === 'totp_enrol_required') {
    const activation = h('input', { id: 'activation', autocomplete: 'off', autocapitalize: 'characters', required: true });
    const pw = h('input', { id: 'new-password', type: 'password', autocomplete: 'new-password', required: true });
    const m2 = h('div', { 'aria-live': 'polite' });
    show(h('h1', {}, t('enrolTitle')), h('p', {}, t('enrolIntro')), h('form', { class: 'shell-form', onsubmit: async (e) => {
      e.preventDefault();
      await finishSignIn(call('POST', '/api/v1/auth/totp/enrol', {
        body: { challenge: r.data.challenge, activation_code: activation.value.trim(), new_password: pw.value },
      }), m2);
    } }, h('label', { for: 'activation' }, t('activationCode')), activation,
    h('label', { for: 'new-password' }, t('newPassword')), pw,
    h('input', { type: 'submit', value: t('enrolNext') })), m2);
    activation.focus();
    return;
  }
  S.token = r.data.token;
  localStorage.setItem('linli.token', S.token);
  S.me = null;
  location.hash = '#/';
}

/** The signed-in person's own place (with its names), when the server named it. */
function ownPlace(me) {
  return me.place && me.place.length && !me.acting_for ? me.place[me.place.length - 1] : null;
}

async function viewHome(params) {
  const me = S.me;
  // In assisted mode: the resident's place.
  let place = me.acting_for ? me.acting_for.tenant : me.person.tenant;
  let picker = null;
  if (isStaff(me) && !me.acting_for) {
    // Staff and admins pick among the villages and communities they can see.
    const places = (await tenantsList().catch(() => [])).filter((x) => x.kind === 'village' || x.kind === 'community');
    if (places.length) {
      const chosen = params.get('place');
      if (chosen && places.some((x) => x.id === chosen)) place = chosen;
      else if (!places.some((x) => x.id === place)) place = places[0].id;
      const sel = h('select', { id: 'home-place', onchange: () => { location.hash = `#/?place=${enc(sel.value)}`; } },
        places.map((tn) => h('option', { value: tn.id, selected: tn.id === place }, `${tenantName(tn)} (${tn.id})`)));
      picker = h('div', { class: 'row' }, h('label', { for: 'home-place' }, t('choosePlace')), sel);
    }
  }
  const features = await api('GET', `/api/v1/tenants/${encodeURIComponent(place)}/features`);
  const own = ownPlace(me);
  show(
    h('h1', {}, `${t('welcome')}，${me.person.name}`),
    assistBanner(me),
    picker,
    h('h2', {}, own && own.id === place && !picker ? t('featuresAt', { place: tenantName(own) }) : t('features')),
    features.length === 0 ? h('p', { class: 'empty' }, t('noFeatures')) : h('div', { class: 'grid' },
      features.map((f) => h('a', { class: 'card', href: `#/p/${enc(place)}/${enc(f.plugin)}/` },
        h('div', { class: 'title' }, pick(f, 'title')),
        h('div', { class: 'sub secondary' }, pick(f, 'description'))))),
  );
}

function assistBanner(me) {
  if (!me.acting_for) return null;
  return h('div', { class: 'notice warning', role: 'status' },
    t('assisted', { name: me.acting_for.name, reason: me.acting_for.reason }), ' ',
    h('a', { href: '#/signout' }, t('endAssist')));
}

/** A plugin page: `#/p/{tenant}/{plugin}/{path}`. Every request it makes — the page, its
 * links, forms, buttons, images, redirects — stays inside `/t/{tenant}/p/{plugin}/`. */
async function viewPlugin(tenant, plugin, path, query) {
  const base = `/t/${enc(tenant)}/p/${enc(plugin)}`;
  const refused = () => show(h('h1', {}, t('error')), notice('error', t('badLink')),
    h('div', { class: 'actions' }, h('a', { class: 'btn', href: '#/' }, t('back'))));
  const ctx = {
    href: (p) => (isPluginPath(p) ? `#/p/${tenant}/${plugin}${p}` : null),
    src: (p) => (typeof p === 'string' && p.startsWith('https://') ? p : pluginUrl(base, p)),
    post: async (p, body) => {
      const url = pluginUrl(base, p);
      if (!url) {
        main().prepend(notice('error', t('badLink')));
        return null;
      }
      const r = await call('POST', url, { body, headers: { Accept: PAGE_TYPE } });
      if (r.type.startsWith(PAGE_TYPE)) {
        await drawPluginAnswer(r, ctx, tenant, plugin);
      } else if (!r.ok) {
        const top = main().querySelector('.notice.error.answer');
        if (top) top.remove();
        const n = notice('error', errorText(r));
        n.classList.add('answer');
        main().prepend(n);
        n.focus?.();
      }
      return r;
    },
  };
  const url = pluginUrl(base, path + (query ? `?${query}` : ''));
  if (!url) return refused();
  const r = await call('GET', url, { headers: { Accept: PAGE_TYPE } });
  await drawPluginAnswer(r, ctx, tenant, plugin);
}

async function drawPluginAnswer(r, ctx, tenant, plugin) {
  if (r.type.startsWith(PAGE_TYPE) && r.data) {
    if (r.data.redirect) {
      if (!isPluginPath(r.data.redirect)) {
        show(h('h1', {}, t('error')), notice('error', t('badLink')));
        return;
      }
      // A redirect's notice ("saved", "pass 123456 …") shows on the page it leads to.
      S.carried = r.data.notice || null;
      const target = `#/p/${tenant}/${plugin}${r.data.redirect}`;
      if (location.hash === target) route(); else location.hash = target;
      return;
    }
    if (S.carried && !r.data.notice) r.data.notice = S.carried;
    S.carried = null;
    document.title = `${txt(r.data.title)} · ${t('app')}`;
    show(assistBanner(S.me), h('h1', {}, txt(r.data.title)), renderPage(r.data, ctx));
    return;
  }
  show(h('h1', {}, t('error')), notice('error', r.status === 404 ? t('notFound') : errorText(r)),
    h('div', { class: 'actions' }, h('a', { class: 'btn', href: '#/' }, t('back'))));
}

async function viewInbox() {
  const messages = await api('GET', '/api/v1/me/inbox');
  show(h('h1', {}, t('inbox')), messages.length === 0 ? h('p', { class: 'empty' }, t('noMessages')) :
    h('ul', { class: 'items' }, messages.map((m) => h('li', { class: m.urgency === 'emergency' ? 'urgent' : null }, h('div', {},
      h('div', { class: 'title' }, pick(m, 'title'),
        m.urgency === 'emergency' ? h('span', { class: 'badge urgent' }, t('urgent')) : null,
        m.read_at ? null : h('span', { class: 'badge' }, t('unread'))),
      h('p', {}, pick(m, 'body')),
      // A plugin's link is a path inside that plugin (checked by the host when it was sent).
      m.link && m.source !== 'host' && ID.test(m.tenant || '') && ID.test(m.source || '') && isPluginPath(m.link)
        ? h('div', { class: 'actions' }, h('a', { class: 'btn', href: `#/p/${m.tenant}/${m.source}${m.link}` }, t('openIt')))
        : null,
      h('div', { class: 'sub' }, fmtTime(m.created_at), ' · ', m.source))))));
}

async function viewMe() {
  const me = S.me;
  const p = me.person;
  // In assisted mode the page is the resident's: their data's uses, their masked name; the
  // full record is theirs to download, not the assistant's.
  const assisted = me.acting_for;
  const uses = await api('GET', '/api/v1/me/data-use?newest=true&limit=200');
  const facts = assisted
    ? [[t('name'), assisted.name], [t('reason'), assisted.reason]]
    : [
      [t('name'), p.name], [t('phone'), p.phone], [t('idNumber'), p.id_number], [t('birth'), p.birth_date],
      [t('household'), p.household], [t('address'), p.address], [t('tags'), tagWords(p.tags)],
      [t('place'), (me.place || []).map(tenantName).join(' › ') || p.tenant],
    ].filter(([, v]) => v);
  const rows = dataUseGroups(uses, assisted ? assisted.id : p.id).map((g) => [
    fmtTime(g.last) + (g.count > 1 ? ` ${t('useSince', { first: fmtTime(g.first) })}` : ''),
    g.who, g.plugin, g.action, g.fields, String(g.count)]);
  const out = h('div', { 'aria-live': 'polite' });
  const exportLink = assisted ? h('p', { class: 'muted' }, t('assistNoExport')) : h('button', { type: 'button', class: 'btn', onclick: async () => {
    const r = await call('GET', '/api/v1/me/export');
    if (!r.ok) {
      out.replaceChildren(notice('error', errorText(r)));
      return;
    }
    const blob = new Blob([JSON.stringify(r.data, null, 2)], { type: 'application/json' });
    const a = h('a', { href: URL.createObjectURL(blob), download: `linli-${p.id}.json` });
    document.body.append(a);
    a.click();
    a.remove();
  } }, t('exportData'));
  show(h('h1', {}, t('myData')), assistBanner(me),
    h('section', { class: 'card' }, h('h2', {}, t('profile')),
      h('dl', { class: 'facts' }, facts.map(([k, v]) => [h('dt', {}, k), h('dd', {}, v)]))),
    h('section', { class: 'card' }, h('h2', {}, t('dataUse')),
      rows.length === 0 ? h('p', { class: 'empty' }, t('noDataUse')) : table([t('lastUse'), t('who'), t('plugin'), t('action'), t('fields'), t('times')], rows),
      uses.length === 200 ? h('p', { class: 'muted' }, t('useNewest')) : null),
    h('div', { class: 'actions' }, exportLink), out);
}

/** The uses of my data, newest first, folded to one row per (who, plugin, action, fields)
 * with how often and since when; each in words. */
function dataUseGroups(uses, me) {
  const fieldKey = { name: 'name', phone: 'phone', 'id-number': 'idNumber', 'birth-date': 'birth', household: 'household', address: 'address', tags: 'tags' };
  const field = (f) => (fieldKey[f] ? t(fieldKey[f]) : f);
  const person = (id, name) => (id === me ? t('youSelf') : id === 'system' ? t('bySystem') : id === 'admin' ? t('byAdmin') : name || id);
  const groups = new Map();
  for (const u of uses) {
    const d = u.detail || {};
    const fields = [...(d.full || []).map((f) => `${field(f)}（${t('full')}）`), ...(d.masked || []).map((f) => `${field(f)}${t('masked')}`)].join('、') || '—';
    const who = u.assistant ? t('assistedBy', { who: person(u.actor, u.actor_name), by: person(u.assistant, u.assistant_name) }) : person(u.actor, u.actor_name);
    const plugin = u.plugin ? pick({ title_zh: u.plugin_title_zh || u.plugin, title_en: u.plugin_title_en || u.plugin }, 'title') : '—';
    const action = wordFor('use_', u.action);
    const key = JSON.stringify([who, plugin, action, fields]);
    const g = groups.get(key);
    if (g) { g.count += 1; g.first = Math.min(g.first, u.at); g.last = Math.max(g.last, u.at); } else groups.set(key, { who, plugin, action, fields, count: 1, first: u.at, last: u.at });
  }
  return [...groups.values()].sort((a, b) => b.last - a.last);
}

/** The word for a code the server sends (`prefix` + code names its entry in `T`); a code
 * without one as it is. */
function wordFor(prefix, code) {
  return T.zh[prefix + code] ? t(prefix + code) : code;
}

/** A person's tags in words (a free tag as written). */
function tagWords(tags) {
  return (tags || []).map((tag) => wordFor('tag_', tag)).join(S.lang === 'en' ? ', ' : '、');
}

/** A status the server names (of a device, a command, an installation) in the reader's
 * language. */
function statusWord(s) {
  return wordFor('st_', s);
}

/** A table. On a phone-sized screen each row is drawn as a card of label–value lines (the
 * cells carry their column's name); the roles keep it a table for screen readers. */
function table(columns, rows) {
  const label = (i) => (typeof columns[i] === 'string' ? columns[i] : '');
  return h('div', { class: 'table-wrap' }, h('table', { role: 'table' },
    h('thead', { role: 'rowgroup' }, h('tr', { role: 'row' }, columns.map((c) => h('th', { scope: 'col', role: 'columnheader' }, c)))),
    h('tbody', { role: 'rowgroup' }, rows.map((r) => h('tr', { role: 'row' },
      r.map((c, i) => h('td', { role: 'cell', 'data-label': label(i) }, c ?? '')))))));
}

// ---- admin console ---------------------------------------------------------------------

function adminMenu(current) {
  const items = [['tenants', t('tenants')], ['people', t('people')], ['plugins', t('plugins')], ['devices', t('devices')], ['assist', t('assist')], ['audit', t('audit')]];
  return h('nav', { class: 'pluginnav', 'aria-label': t('admin') }, items.map(([k, label]) =>
    h('a', { class: `btn ${k === current ? 'primary' : ''}`, href: `#/admin/${k}`, 'aria-current': k === current ? 'page' : null }, label)));
}

async function tenantsList() {
  return api('GET', '/api/v1/tenants');
}

function tenantName(tn) {
  return S.lang === 'en' ? tn.name_en || tn.name_zh : tn.name_zh || tn.name_en;
}

/** A place picker for admin views; `#/admin/x?tenant=id`. */
function placePicker(all, current, section) {
  const sel = h('select', { id: 'place', onchange: () => { location.hash = `#/admin/${section}?tenant=${enc(sel.value)}`; } },
    all.map((tn) => h('option', { value: tn.id, selected: tn.id === current }, `${tenantName(tn)} (${tn.id})`)));
  return h('div', { class: 'row' }, h('label', { for: 'place' }, t('choosePlace')), sel);
}

async function viewAdmin(section, params) {
  section = section || 'tenants';
  const all = await tenantsList().catch(() => []);
  const fallback = (all.find((x) => x.kind === 'village' || x.kind === 'community') || all[0] || {}).id;
  const asked = params.get('tenant');
  if (asked && !ID.test(asked)) {
    show(h('h1', {}, t('notFound')), h('a', { class: 'btn', href: '#/admin' }, t('back')));
    return;
  }
  const tenant = asked || fallback;
  const head = [h('h1', {}, t('admin')), adminMenu(section)];
  const views = {
    tenants: () => adminTenants(all),
    people: () => adminPeople(all, tenant),
    plugins: () => adminPlugins(all, tenant),
    devices: () => adminDevices(all, tenant, params),
    assist: () => adminAssist(),
    audit: () => adminAudit(params),
  };
  const body = await (views[section] || views.tenants)();
  show(head, body);
}

function adminTenants(all) {
  const children = (id) => all.filter((x) => x.parent_id === id);
  const roots = all.filter((x) => !x.parent_id || !all.some((y) => y.id === x.parent_id));
  const node = (tn) => h('li', {}, h('span', { class: 'strong' }, tenantName(tn)), ` ${tn.kind} · `, h('code', {}, tn.id), ' ',
    (tn.kind === 'village' || tn.kind === 'community' || tn.kind === 'township')
      ? h('a', { href: `#/admin/plugins?tenant=${enc(tn.id)}` }, t('plugins')) : null,
    children(tn.id).length ? h('ul', {}, children(tn.id).map(node)) : null);
  return h('section', { class: 'card tree' }, h('h2', {}, t('tenants')), h('ul', {}, roots.map(node)));
}

async function adminPeople(all, tenant) {
  const page = await api('GET', `/api/v1/tenants/${enc(tenant)}/people?limit=200`);
  const file = h('input', { type: 'file', id: 'roster', accept: '.csv,.xlsx,text/csv' });
  const report = h('div', { 'aria-live': 'polite' });
  const form = h('form', { class: 'shell-form', onsubmit: async (e) => {
    e.preventDefault();
    const f = file.files[0];
    if (!f) return;
    const isXlsx = f.name.toLowerCase().endsWith('.xlsx');
    const r = await call('POST', `/api/v1/tenants/${enc(tenant)}/people/import`, {
      body: f, raw: true,
      headers: { 'Content-Type': isXlsx ? 'application/vnd.openxmlformats-officedocument.spreadsheetml.sheet' : 'text/csv' },
    });
    if (r.data && r.data.imported) {
      report.replaceChildren(notice('success', t('imported', { c: r.data.created, u: r.data.updated, n: r.data.unchanged })));
    } else if (r.data && Array.isArray(r.data.errors)) {
      report.replaceChildren(notice('error', t('importErrors', { n: r.data.errors.length })),
        table([t('row'), t('column'), t('message')], r.data.errors.map((x) => [String(x.row), x.field, x.message])));
    } else {
      report.replaceChildren(notice('error', errorText(r)));
    }
  } }, h('label', { for: 'roster' }, t('importRoster')), file, h('input', { type: 'submit', value: t('import') }));
  return [placePicker(all, tenant, 'people'),
    h('section', { class: 'card' }, form, report),
    h('section', { class: 'card' }, h('h2', {}, t('people')),
      table([t('name'), t('phone'), t('idNumber'), t('household'), t('tags'), t('personId')],
        page.people.map((p) => [p.name, p.phone, p.id_number, p.household, tagWords(p.tags), p.id])))];
}

/** Devices of a place: the list, registering one (its secret shown once), a CSV/XLSX import
 * and, per device, a new secret and the commands plugins sent it with their outcomes. */
async function adminDevices(all, tenant, params) {
  const [page, kinds] = await Promise.all([
    api('GET', `/api/v1/tenants/${enc(tenant)}/devices?limit=500`),
    api('GET', '/api/v1/device-kinds'),
  ]);
  const kindName = (k) => { const x = kinds.find((y) => y.kind === k); return S.lang === 'en' || !x ? k : x.zh; };
  const out = h('div', { 'aria-live': 'polite' });
  const flash = sessionStorage.getItem('linli.flash');
  if (flash) {
    sessionStorage.removeItem('linli.flash');
    out.replaceChildren(notice('success', flash));
  }
  const secretNotice = (id, secret) => notice('success', `${t('secretOnce')} ${id}: ${secret}`);
  const field = (id, label, attrs = {}) => [h('label', { for: id }, label), h('input', { id, ...attrs })];
  const kindSel = h('select', { id: 'dev-kind' }, kinds.map((k) => h('option', { value: k.kind }, `${kindName(k.kind)} (${k.kind})`)));
  const form = h('form', { class: 'shell-form', onsubmit: async (e) => {
    e.preventDefault();
    const v = (id) => document.getElementById(id).value.trim();
    const body = { id: v('dev-id'), kind: kindSel.value, name: v('dev-name'), location: v('dev-location'),
      vendor: v('dev-vendor'), model: v('dev-model'), person: v('dev-person') || null };
    const r = await call('POST', `/api/v1/tenants/${enc(tenant)}/devices`, { body });
    if (!r.ok) { out.replaceChildren(notice('error', errorText(r))); return; }
    // Shown once, on the redrawn page.
    sessionStorage.setItem('linli.flash', `${t('secretOnce')} ${r.data.device.id}: ${r.data.secret}`);
    await route();
  } }, h('h2', {}, t('addDevice')),
  ...field('dev-id', t('deviceId'), { required: true, pattern: '[a-z0-9][a-z0-9-]{0,62}' }),
  h('label', { for: 'dev-kind' }, t('kind')), kindSel,
  ...field('dev-name', t('deviceName'), { required: true, maxlength: '100' }),
  ...field('dev-location', t('location'), { maxlength: '100' }),
  ...field('dev-vendor', t('vendor'), { maxlength: '100' }),
  ...field('dev-model', t('model'), { maxlength: '100' }),
  ...field('dev-person', t('wearer')),
  h('input', { type: 'submit', value: t('addDevice') }));
  const file = h('input', { type: 'file', id: 'devlist', accept: '.csv,.xlsx,text/csv' });
  const importForm = h('form', { class: 'shell-form', onsubmit: async (e) => {
    e.preventDefault();
    const f = file.files[0];
    if (!f) return;
    const isXlsx = f.name.toLowerCase().endsWith('.xlsx');
    const r = await call('POST', `/api/v1/tenants/${enc(tenant)}/devices/import`, {
      body: f, raw: true,
      headers: { 'Content-Type': isXlsx ? 'application/vnd.openxmlformats-officedocument.spreadsheetml.sheet' : 'text/csv' },
    });
    if (r.data && r.data.imported) {
      out.replaceChildren(notice('success', t('imported', { c: r.data.created, u: r.data.updated, n: r.data.unchanged })),
        ...(r.data.secrets || []).map((s) => secretNotice(s.id, s.secret)));
    } else if (r.data && Array.isArray(r.data.errors)) {
      out.replaceChildren(notice('error', t('importErrors', { n: r.data.errors.length })),
        table([t('row'), t('column'), t('message')], r.data.errors.map((x) => [String(x.row), x.field, x.message])));
    } else {
      out.replaceChildren(notice('error', errorText(r)));
    }
  } }, h('label', { for: 'devlist' }, t('importDevices')), file, h('input', { type: 'submit', value: t('import') }));
  const fresh = (d) => d.last_seen_at && Date.now() - d.last_seen_at < 5 * 60 * 1000;
  const rows = page.devices.map((d) => [
    h('a', { href: `#/admin/devices?tenant=${enc(tenant)}&device=${enc(d.id)}` }, d.id), kindName(d.kind),
    `${d.name} · ${d.tenant}${d.location ? ' · ' + d.location : ''}`,
    `${statusWord(d.status)} · ${fresh(d) ? t('online') : t('offline')}${d.last_seen_at ? ` (${fmtTime(d.last_seen_at)})` : ''}`,
    h('button', { type: 'button', class: 'btn', onclick: async () => {
      const r = await call('POST', `/api/v1/devices/${enc(d.id)}/secret`, { body: {} });
      out.replaceChildren(r.ok ? secretNotice(d.id, r.data.secret) : notice('error', errorText(r)));
    } }, t('rotateSecret'))]);
  const sections = [placePicker(all, tenant, 'devices'), out,
    h('section', { class: 'card' }, h('h2', {}, t('devices')),
      table([t('deviceId'), t('kind'), `${t('deviceName')} · ${t('location')}`, `${t('status')} · ${t('lastSeen')}`, ''], rows))];
  const chosen = params.get('device');
  if (chosen) {
    const cmds = await api('GET', `/api/v1/devices/${enc(chosen)}/commands?limit=100`);
    sections.push(h('section', { class: 'card', id: 'device-commands' }, h('h2', {}, `${t('commands')} · ${chosen}`),
      cmds.length ? table([t('when'), t('plugin'), t('command'), t('outcome')],
        cmds.map((c) => [fmtTime(c.created_at), c.plugin_id, `${c.command} ${JSON.stringify(c.payload)}`,
          statusWord(c.status) + (c.reply != null ? ` ${JSON.stringify(c.reply)}` : '')]))
        : h('p', {}, t('noCommands'))));
  }
  sections.push(h('section', { class: 'card' }, form), h('section', { class: 'card' }, importForm));
  return sections;
}

// Which installations' grant lists the admin has open, kept across redraws.
const openGrants = new Set();

function capItem(inst, req, required) {
  const granted = inst.grants.includes(req.name);
  const path = `/api/v1/tenants/${enc(inst.tenant)}/plugins/${enc(inst.plugin)}/grants/${enc(req.name)}`;
  return h('li', { class: granted ? 'granted' : 'missing' },
    h('div', { class: 'cap' },
      h('code', {}, req.name),
      h('span', { class: `badge${required && !granted ? ' urgent' : ''}` }, required ? t('requiredCap') : t('optionalCap')),
      h('span', { class: 'badge' }, granted ? t('capGranted') : t('capNotGranted'))),
    h('span', { class: 'purpose' }, pick(req, 'purpose')),
    h('button', { type: 'button', class: `btn ${granted ? 'danger' : 'primary'}`, 'data-cap': req.name,
      'aria-label': `${granted ? t('revoke') : t('grant')} ${req.name}`,
      onclick: async () => { await api(granted ? 'DELETE' : 'PUT', path); route(); } },
    granted ? t('revoke') : t('grant')));
}

/** An installation's grants, folded to one line until opened (open when a required one is missing). */
function capList(tenant, inst) {
  const caps = [...inst.metadata.required.map((c) => [c, true]), ...inst.metadata.optional.map((c) => [c, false])];
  const key = `${tenant}/${inst.plugin}`;
  const granted = caps.filter(([c]) => inst.grants.includes(c.name)).length;
  const missing = inst.metadata.required.some((c) => !inst.grants.includes(c.name));
  const box = h('details', { class: 'caps', open: missing || openGrants.has(key),
    ontoggle: () => { if (box.open) openGrants.add(key); else openGrants.delete(key); } },
  h('summary', {}, h('span', { class: 'strong' }, t('grants')), ' ',
    t('grantedCount', { granted, total: caps.length })),
  h('ul', { class: 'caps' }, caps.map(([c, required]) => capItem(inst, c, required))));
  return box;
}

async function adminPlugins(all, tenant) {
  const list = h('div');
  const drawPlugins = async () => {
    const installed = await api('GET', `/api/v1/tenants/${enc(tenant)}/plugins`);
    list.replaceChildren(...installed.map((inst) => pluginCard(tenant, inst)));
  };
  const file = h('input', { type: 'file', id: 'wasm', accept: '.wasm,application/wasm' });
  const agree = h('input', { type: 'checkbox', id: 'agree' });
  const out = h('div', { 'aria-live': 'polite' });
  const form = h('form', { class: 'shell-form', onsubmit: async (e) => {
    e.preventDefault();
    const f = file.files[0];
    if (!f) return;
    const q = agree.checked ? '?grant=required' : '';
    const r = await call('POST', `/api/v1/tenants/${enc(tenant)}/plugins${q}`, { body: f, raw: true, headers: { 'Content-Type': 'application/wasm' } });
    const d = r.ok ? r.data.grants : r.data && r.data.error && r.data.error.detail;
    const nodes = [r.ok
      ? notice('success', `${t(r.data.action)}: ${r.data.installation.plugin} ${r.data.installation.version}`)
      : notice('error', errorText(r))];
    if (d && !r.ok && (d.required || d.optional)) {
      const rows = [...(d.required || []).map((c) => [c.name, t('requiredCap'), pick(c, 'purpose')]),
        ...(d.optional || []).map((c) => [c.name, t('optionalCap'), pick(c, 'purpose')])];
      nodes.push(h('p', {}, t('asks')), table([t('grants'), '', t('purpose')], rows));
    }
    // An upgrade: what the new version asks for beyond the one it replaces.
    const added = d ? [...(d.added || []), ...(d.now_required || [])] : [];
    if (added.length) {
      nodes.push(h('p', {}, t('diffAdded')), table([t('grants'), t('purpose')], added.map((c) => [c.name, pick(c, 'purpose')])));
    }
    if (d && d.removed && d.removed.length) {
      nodes.push(h('p', {}, t('diffRemoved'), ' ', d.removed.join('、')));
    }
    out.replaceChildren(...nodes);
    if (r.ok) await drawPlugins();
  } }, h('label', { for: 'wasm' }, t('install')), file,
  h('label', { for: 'agree', class: 'row' }, agree, t('grantRequired')),
  h('input', { type: 'submit', value: t('install') }));
  await drawPlugins();
  return [placePicker(all, tenant, 'plugins'), h('section', { class: 'card' }, form, out), list];
}

function pluginCard(tenant, inst) {
  return h('section', { class: 'card', 'data-plugin': inst.plugin },
    h('h2', {}, `${pick(inst.metadata, 'title')} (${inst.plugin})`),
    h('dl', { class: 'facts' }, h('dt', {}, t('version')), h('dd', {}, inst.version),
      h('dt', {}, t('status')), h('dd', {}, statusWord(inst.status) + (inst.status_reason ? ` — ${inst.status_reason}` : ''))),
    capList(tenant, inst),
    h('div', { class: 'actions' },
      h('button', { type: 'button', class: 'btn', onclick: async () => {
        await api('POST', `/api/v1/tenants/${enc(tenant)}/plugins/${enc(inst.plugin)}/${inst.status === 'active' ? 'suspend' : 'resume'}`, {});
        route();
      } }, inst.status === 'active' ? t('suspend') : t('resume')),
      h('button', { type: 'button', class: 'btn danger', onclick: async () => {
        if (!confirm(t('uninstallConfirm'))) return;
        await api('DELETE', `/api/v1/tenants/${enc(tenant)}/plugins/${enc(inst.plugin)}`);
        route();
      } }, t('uninstall'))));
}

function adminAssist() {
  const resident = h('input', { id: 'resident', required: true, inputmode: 'tel', autocomplete: 'off' });
  const reason = h('input', { id: 'reason', required: true });
  const minutes = h('input', { id: 'minutes', type: 'number', min: '1', max: '240', value: '30' });
  const out = h('div', { 'aria-live': 'polite' });
  return h('section', { class: 'card' }, h('h2', {}, t('assist')), h('form', { class: 'shell-form', onsubmit: async (e) => {
    e.preventDefault();
    const r = await call('POST', '/api/v1/assist', { body: { resident: resident.value.trim(), reason: reason.value.trim(), minutes: Number(minutes.value) } });
    if (!r.ok) { out.replaceChildren(notice('error', errorText(r))); return; }
    // The staff member's own session is kept to come back to after the assisted one ends.
    sessionStorage.setItem('linli.staffToken', S.token);
    S.token = r.data.token;
    localStorage.setItem('linli.token', S.token);
    S.me = null;
    location.hash = '#/';
  } }, h('label', { for: 'resident' }, t('resident')), resident, h('label', { for: 'reason' }, t('reason')), reason,
  h('label', { for: 'minutes' }, t('minutes')), minutes, h('input', { type: 'submit', value: t('startAssist') })), out);
}

async function adminAudit(params) {
  const q = new URLSearchParams({ limit: '200' });
  for (const k of ['action', 'plugin', 'subject', 'person']) if (params.get(k)) q.set(k, params.get(k));
  const records = await api('GET', `/api/v1/audit?${q}`);
  const out = h('div', { 'aria-live': 'polite' });
  const verify = h('button', { type: 'button', class: 'btn', onclick: async () => {
    const r = await call('GET', '/api/v1/audit/verify');
    if (!r.ok) out.replaceChildren(notice('error', errorText(r)));
    else if (r.data.intact) out.replaceChildren(notice('success', t('chainOk', { n: r.data.records })));
    else out.replaceChildren(notice('error', t('chainBroken', { m: `#${r.data.broken_at}: ${r.data.reason}` })));
  } }, t('verifyChain'));
  return [h('div', { class: 'actions' }, verify), out,
    table(['#', t('when'), t('who'), t('plugin'), t('place'), t('action'), t('status'), t('fields')],
      records.slice().reverse().map((r) => [String(r.seq), fmtTime(r.at), r.assistant ? `${r.actor} / ${r.assistant}` : r.actor,
        r.plugin || '', r.tenant || '', r.action, r.outcome, JSON.stringify(r.detail)]))];
}

// ---- routing ---------------------------------------------------------------------------

async function signOut() {
  if (S.token) await call('POST', '/api/v1/auth/logout', { body: {} }).catch(() => {});
  signOutLocally();
  const staff = sessionStorage.getItem('linli.staffToken');
  if (staff) {
    sessionStorage.removeItem('linli.staffToken');
    S.token = staff;
    localStorage.setItem('linli.token', staff);
  }
  location.hash = S.token ? '#/admin/assist' : '#/signin';
}

// Navigation state: views load asynchronously, so two quick hash changes could otherwise
// finish out of order and leave the older page drawn. One route runs at a time; a change
// during it marks it stale (its `show` draws nothing) and runs the newest route after it.
const routing = { running: null, pending: false };

async function route() {
  if (routing.running) {
    routing.pending = true;
    return routing.running;
  }
  routing.running = (async () => {
    do {
      routing.pending = false;
      await routeOnce();
    } while (routing.pending);
  })();
  try {
    await routing.running;
  } finally {
    routing.running = null;
  }
}

async function routeOnce() {
  applyChrome();
  const raw = location.hash.replace(/^#/, '') || '/';
  const [path, query = ''] = raw.split('?');
  const params = new URLSearchParams(query);
  try {
    if (path === '/signout') return await signOut();
    const me = await loadMe();
    if (!me && path !== '/signin') {
      location.hash = '#/signin';
      return;
    }
    menu(path.startsWith('/admin') ? '#/admin' : `#${path}`);
    if (path === '/signin') return await viewSignIn(params);
    if (path === '/') return await viewHome(params);
    if (path === '/inbox') return await viewInbox();
    if (path === '/me') return await viewMe();
    if (path === '/admin' || path.startsWith('/admin/')) return await viewAdmin(path.split('/')[2], params);
    const m = path.match(/^\/p\/([a-z0-9-]+)\/([a-z0-9-]+)(\/.*)?$/);
    if (m) return await viewPlugin(m[1], m[2], m[3] || '/', query);
    show(h('h1', {}, t('notFound')), h('a', { class: 'btn', href: '#/' }, t('back')));
  } catch (e) {
    if (e instanceof ApiError && e.status === 401) return;
    show(h('h1', {}, t('error')), notice('error', e.message || String(e)),
      h('div', { class: 'actions' }, h('button', { type: 'button', class: 'btn', onclick: route }, t('retry'))));
  } finally {
    main().focus({ preventScroll: true });
    window.scrollTo(0, 0);
  }
}

document.getElementById('elder-toggle').addEventListener('click', () => {
  S.elder = !S.elder;
  localStorage.setItem('linli.elder', S.elder ? '1' : '0');
  applyChrome();
});
document.getElementById('lang-toggle').addEventListener('click', () => {
  S.lang = S.lang === 'en' ? 'zh' : 'en';
  localStorage.setItem('linli.lang', S.lang);
  route();
});
document.getElementById('read-aloud').addEventListener('click', readAloud);
window.addEventListener('hashchange', route);
route();
