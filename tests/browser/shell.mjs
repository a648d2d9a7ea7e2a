// The web shell in a real headless Chromium (Debian's /usr/bin/chromium), driven by Playwright.
//
// Run by the Rust test `browser::*` (tests/all/browser.rs), which starts `linli serve` with the
// demo county on SQLite or Postgres and passes:
//   LINLI_URL          the server, e.g. http://127.0.0.1:43121
//   LINLI_SHOTS        where to keep screenshots (test artefacts)
//   LINLI_HELLO_WASM   examples/hello built for wasm32-wasip2 (the admin installs it)
//   LINLI_HELLO_NEXT_WASM  a later hello that asks for more (the admin sees the difference)
//   LINLI_TOTP_SECRET  the demo admins' TOTP secret
//   LINLI_SERVER_LOG   the server's log, where the dev SMS sender writes sign-in codes
//   LINLI_SOS_SECRET   the secret of 李桂兰's emergency button (dongcun-sos-li)
//   LINLI_ACTIVATION_CODE  the activation code of a new audit admin (13900000021), made
//                      by the county root; their password was set by someone else
//   CHROMIUM           the browser (default /usr/bin/chromium)
// Exits non-zero with the failed step on the first failure.

import { chromium } from 'playwright-core';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';

const URL_ = process.env.LINLI_URL;
const SHOTS = process.env.LINLI_SHOTS || 'shots';
const HELLO = process.env.LINLI_HELLO_WASM;
const HELLO_NEXT = process.env.LINLI_HELLO_NEXT_WASM;
const SECRET = process.env.LINLI_TOTP_SECRET;
const PASSWORD = 'linli-demo-2026';
const ACTIVATION = process.env.LINLI_ACTIVATION_CODE;
assert.ok(URL_, 'LINLI_URL is required');
fs.mkdirSync(SHOTS, { recursive: true });

function totp(secretB32, at = Date.now()) {
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';
  let bits = '';
  for (const c of secretB32.replace(/=+$/, '')) bits += alphabet.indexOf(c).toString(2).padStart(5, '0');
  const key = Buffer.from(bits.match(/.{8}/g).map((b) => parseInt(b, 2)));
  const counter = Buffer.alloc(8);
  counter.writeBigUInt64BE(BigInt(Math.floor(at / 30000)));
  const mac = crypto.createHmac('sha1', key).update(counter).digest();
  const o = mac[mac.length - 1] & 0xf;
  const n = ((mac[o] & 0x7f) << 24) | (mac[o + 1] << 16) | (mac[o + 2] << 8) | mac[o + 3];
  return String(n % 1_000_000).padStart(6, '0');
}

// Every text key the shell uses exists in Chinese and in English.
let step = 'texts';
{
  const source = fs.readFileSync(new URL('../../host/src/shell/app.js', import.meta.url), 'utf8');
  const used = new Set([...source.matchAll(/\bt\('([A-Za-z]+)'/g)].map((m) => m[1]));
  for (const key of used) {
    const defined = [...source.matchAll(new RegExp(`[{,\\s]${key}: '`, 'g'))].length;
    assert.ok(defined >= 2, `text "${key}" needs a zh and an en entry (found ${defined})`);
  }
}

step = 'launch';
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: ['--no-sandbox', '--disable-dev-shm-usage'],
});
const errors = [];

async function newPage() {
  // A phone-sized screen first.
  const context = await browser.newContext({ viewport: { width: 390, height: 844 }, locale: 'zh-CN' });
  const page = await context.newPage();
  page.on('pageerror', (e) => errors.push(`${step}: ${e.message}`));
  page.on('dialog', (d) => d.accept());
  return page;
}

async function shot(page, name) {
  // Whatever the page, nothing drawn as a stringified object.
  const text = await page.locator('main').innerText();
  assert.ok(!/\[object |undefined|NaN/.test(text), `${name}: nothing mis-drawn in: ${text}`);
  await page.screenshot({ path: path.join(SHOTS, `${name}.png`), fullPage: true });
}

async function signIn(page, phone) {
  await page.goto(`${URL_}/#/signin`);
  await page.fill('#phone', phone);
  await page.fill('#password', PASSWORD);
  await page.click('input[type=submit]');
}

async function elderChecks(page, name) {
  const got = await page.evaluate(() => ({
    elder: document.documentElement.classList.contains('elder'),
    size: getComputedStyle(document.documentElement).fontSize,
    tap: Math.min(...[...document.querySelectorAll('main a.btn, main button, main input[type=submit]')]
      .filter((e) => e.offsetParent !== null)
      .map((e) => e.getBoundingClientRect().height)),
  }));
  assert.equal(got.elder, true, `${name}: elder mode is on`);
  assert.equal(got.size, '22px', `${name}: large type`);
  if (Number.isFinite(got.tap)) assert.ok(got.tap >= 59, `${name}: big touch targets (${got.tap}px)`);
  await shot(page, `elder-${name}`);
}

try {
  // ---- a resident votes -----------------------------------------------------------------
  step = 'resident signs in';
  const page = await newPage();
  await page.goto(URL_);
  await page.waitForURL(/#\/signin/);
  assert.equal(await page.getAttribute('html', 'lang'), 'zh-CN');
  await shot(page, 'signin');
  await signIn(page, '13800000001');
  await page.getByRole('heading', { name: /您好/ }).waitFor();
  await page.getByRole('heading', { name: '东村的服务' }).waitFor();
  await shot(page, 'resident-home');

  step = 'resident opens the topic';
  await page.getByRole('link', { name: /协商议事/ }).click();
  await page.getByRole('heading', { name: '协商议事' }).waitFor();
  await page.getByRole('link', { name: /是否用村集体资金修缮村东道路/ }).click();
  await page.getByRole('heading', { name: '是否用村集体资金修缮村东道路' }).waitFor();

  step = 'resident votes';
  await page.getByLabel('同意', { exact: true }).check();
  await page.getByRole('button', { name: '投票', exact: true }).or(page.locator('input[type=submit][value="投票"]')).click();
  await page.getByText('您的投票已记录。').waitFor();
  await page.getByText('您已投票：同意').waitFor();
  await page.getByRole('tab', { name: '结果' }).click();
  await page.getByText(/已投票 1 人，共 2 名选民/).waitFor();
  await shot(page, 'resident-voted');

  step = 'keyboard: tabs move with the arrow keys';
  await page.getByRole('tab', { name: '结果' }).focus();
  await page.keyboard.press('ArrowRight');
  assert.equal(await page.getByRole('tab', { name: /讨论/ }).getAttribute('aria-selected'), 'true');

  step = 'English';
  await page.click('#lang-toggle');
  await page.getByRole('tab', { name: 'Results' }).waitFor();
  assert.equal(await page.getAttribute('html', 'lang'), 'en');
  await shot(page, 'resident-english');
  await page.click('#lang-toggle');
  await page.getByRole('tab', { name: '结果' }).waitFor();

  step = 'elder mode on every page';
  await page.click('#elder-toggle');
  assert.equal(await page.getAttribute('#elder-toggle', 'aria-pressed'), 'true');
  await elderChecks(page, 'topic');
  assert.equal(await page.isVisible('#read-aloud'), true, 'read-aloud is offered');
  await page.click('#read-aloud');
  await page.click('#read-aloud');
  for (const [name, hash, heading] of [
    ['home', '#/', /您好/],
    ['inbox', '#/inbox', '消息'],
    ['my-data', '#/me', '我的数据'],
    ['feature', '#/p/dongcun/consultation/', '协商议事'],
    ['disclosure', '#/p/dongcun/consultation/disclosure', '村务公开'],
    ['record', '#/p/dongcun/consultation/topics/1/record', /选票记录/],
    ['parking', '#/p/dongcun/parking/', '停车与门禁'],
  ]) {
    await page.goto(`${URL_}/${hash}`);
    await page.getByRole('heading', { name: heading }).first().waitFor();
    await elderChecks(page, name);
  }

  step = 'a slow page does not draw over a newer one';
  // The inbox answers late; meanwhile she moves on to "my data", which must stay drawn.
  await page.route('**/api/v1/me/inbox', async (r) => {
    await new Promise((res) => setTimeout(res, 800));
    await r.continue();
  });
  const slow = page.waitForResponse('**/api/v1/me/inbox');
  await page.evaluate(() => { location.hash = '#/inbox'; });
  await page.evaluate(() => { location.hash = '#/me'; });
  await slow;
  await page.getByRole('heading', { name: '我的数据', exact: true }).waitFor();
  await page.evaluate(() => new Promise((r) => setTimeout(r, 300)));
  assert.equal(await page.getByRole('heading', { name: '消息', exact: true }).count(), 0,
    'the late inbox did not replace the page she moved on to');
  await page.getByRole('heading', { name: '我的数据', exact: true }).waitFor();
  await page.unroute('**/api/v1/me/inbox');

  step = 'my data says who used which field, in words';
  await page.goto(`${URL_}/#/me`);
  await page.getByText('青山县 › 东溪镇 › 东村').waitFor();
  await page.getByRole('cell', { name: '协商议事' }).first().waitFor();
  await page.getByRole('cell', { name: '读取您的资料' }).first().waitFor();
  await page.getByRole('cell', { name: /出生日期（完整）/ }).first().waitFor();
  assert.equal(await page.getByRole('cell', { name: /identity\.get-profile|p-[0-9a-f]{20}/ }).count(), 0,
    'no action codes or person ids');

  step = 'her car is registered; she makes a visitor pass (elder mode)';
  await page.goto(`${URL_}/#/p/dongcun/parking/`);
  await page.getByText('浙A12345').first().waitFor();
  await page.locator('input[type=submit][value="生成访客通行证"]').click();
  await page.getByText(/通行证 \d{6}，有效至/).waitFor();
  await shot(page, 'elder-parking-pass');

  step = 'signing out';
  await page.goto(`${URL_}/#/signout`);
  await page.waitForURL(/#\/signin/);
  await elderChecks(page, 'signin');

  // ---- an elder without a password signs in by SMS code ----------------------------------
  step = 'sign-in by SMS code';
  const elder = await newPage();
  await elder.goto(`${URL_}/#/signin`);
  await elder.getByRole('button', { name: '短信验证码登录' }).click();
  await elder.fill('#phone', '13800000003');
  await elder.getByRole('button', { name: '发送验证码' }).click();
  await elder.getByText('如该号码已登记，验证码已发送。').waitFor();
  let code = null;
  for (let i = 0; i < 50 && !code; i++) {
    const log = fs.readFileSync(process.env.LINLI_SERVER_LOG, 'utf8');
    const m = [...log.matchAll(/138\*\*\*\*0003.*code="?(\d{6})/g)].pop();
    code = m && m[1];
    if (!code) await new Promise((r) => setTimeout(r, 100));
  }
  assert.ok(code, 'the dev SMS sender logged a code');
  await elder.fill('#code', code);
  await elder.click('input[type=submit]');
  await elder.getByRole('heading', { name: /您好，李桂兰/ }).waitFor();
  await shot(elder, 'elder-signed-in-by-code');

  // ---- staff see the result ---------------------------------------------------------------
  step = 'staff see the count';
  const staff = await newPage();
  await signIn(staff, '13900000002');
  await staff.getByRole('heading', { name: /您好/ }).waitFor();
  await staff.goto(`${URL_}/#/p/dongcun/consultation/topics/1`);
  await staff.getByRole('tab', { name: '结果' }).click();
  await staff.getByText(/已投票 1 人/).waitFor();
  await shot(staff, 'staff-topic');

  // ---- an emergency button press reaches the grid worker's inbox; the alarm is handled ----
  step = 'emergency button pressed';
  const sos = await fetch(`${URL_}/api/v1/device-messages/dongcun-sos-li`, {
    method: 'POST',
    headers: { authorization: `Bearer ${process.env.LINLI_SOS_SECRET}`, 'content-type': 'application/json' },
    body: JSON.stringify({ type: 'press' }),
  });
  assert.equal(sos.status, 202, 'the host took the press');
  step = 'grid worker sees the alarm in the inbox';
  const grid = await newPage();
  await signIn(grid, '13900000001');
  await grid.getByRole('heading', { name: /您好/ }).waitFor();
  let urgent = 0;
  for (let i = 0; i < 30 && urgent === 0; i++) {
    await grid.goto(`${URL_}/#/`);
    await grid.goto(`${URL_}/#/inbox`);
    await grid.getByRole('heading', { name: '消息' }).waitFor();
    urgent = await grid.locator('li.urgent').count();
    if (urgent === 0) await new Promise((r) => setTimeout(r, 200));
  }
  assert.equal(urgent, 1, 'one urgent message');
  await grid.getByText('紧急呼叫：李桂兰').waitFor();
  await shot(grid, 'grid-inbox-alarm');
  step = 'grid worker acknowledges the alarm';
  await grid.locator('li.urgent a.btn').click();
  await grid.getByRole('heading', { name: '紧急呼叫：李桂兰' }).waitFor();
  await grid.getByRole('button', { name: '确认收到' }).click();
  await grid.getByText('已确认').first().waitFor();
  await shot(grid, 'grid-alarm-acknowledged');
  await grid.locator('html').evaluate(() => document.documentElement.classList.add('elder'));
  await elderChecks(grid, 'alarm');

  step = 'grid worker helps 李桂兰 by her phone (assisted mode): my data is hers, no download';
  await grid.locator('html').evaluate(() => document.documentElement.classList.remove('elder'));
  await grid.goto(`${URL_}/#/admin/assist`);
  await grid.fill('#resident', '13800000003');
  await grid.fill('#reason', '代缴医保');
  await grid.locator('input[type=submit][value="开始帮办"]').click();
  await grid.getByText('帮办模式：正在为 李* 办理（代缴医保）').first().waitFor();
  await grid.goto(`${URL_}/#/me`);
  await grid.getByText(/帮办时不能下载居民的全部数据/).waitFor();
  assert.equal(await grid.getByRole('button', { name: '下载我的全部数据' }).count(), 0);
  assert.equal(await grid.getByText('13900000001').count(), 0, "not the grid worker's own record");
  await shot(grid, 'grid-assisting-my-data');
  await grid.getByRole('link', { name: '结束帮办' }).click();
  await grid.waitForURL(/#\/admin\/assist/);
  await grid.locator('#resident').waitFor();

  // ---- an admin installs a plugin and grants it -------------------------------------------
  step = 'admin signs in with TOTP';
  const admin = await newPage();
  await signIn(admin, '13900000011');
  await admin.waitForSelector('#totp');
  await admin.fill('#totp', totp(SECRET));
  await admin.click('input[type=submit]');
  await admin.getByRole('heading', { name: /您好/ }).waitFor();

  step = 'the township admin sees the result';
  await admin.getByLabel('选择村社').selectOption('dongcun');
  await admin.getByRole('link', { name: /协商议事/ }).click();
  await admin.getByRole('link', { name: /是否用村集体资金修缮村东道路/ }).click();
  await admin.getByRole('tab', { name: '结果' }).click();
  await admin.getByText(/已投票 1 人/).waitFor();
  await shot(admin, 'admin-topic');

  step = 'admin uninstalls hello in xicun';
  await admin.goto(`${URL_}/#/admin/plugins?tenant=xicun`);
  await admin.locator('section[data-plugin=hello]').waitFor();
  await admin.locator('section[data-plugin=hello]').getByRole('button', { name: '卸载' }).click();
  await admin.locator('section[data-plugin=hello]').waitFor({ state: 'detached' });

  step = 'admin installs hello: asked to grant first';
  await admin.setInputFiles('#wasm', HELLO);
  await admin.locator('form input[type=submit][value="安装或升级插件（.wasm）"]').click();
  await admin.getByText('插件请求以下权限：').waitFor();
  await admin.getByRole('cell', { name: '保存访问次数和留言' }).waitFor();
  await shot(admin, 'admin-grants-asked');
  await admin.check('#agree');
  await admin.locator('form input[type=submit][value="安装或升级插件（.wasm）"]').click();
  await admin.getByText(/已安装: hello/).waitFor();
  await admin.locator('section[data-plugin=hello]').waitFor();

  step = 'admin grants identity.phone';
  // Every required grant is given, so the list is folded to one line that counts them.
  const caps = admin.locator('section[data-plugin=hello] details.caps');
  assert.equal(await caps.evaluate((d) => d.open), false, 'grants folded');
  const counted = /已授予 (\d+) \/ (\d+) 项/;
  const before = (await caps.locator('summary').textContent()).match(counted);
  assert.ok(before, 'the summary counts the grants');
  await caps.locator('summary').click();
  const grant = admin.locator('section[data-plugin=hello] button[data-cap="identity.phone"]');
  assert.equal(await grant.textContent(), '授予');
  await grant.click();
  await admin.waitForFunction(() => document.querySelector('section[data-plugin=hello] button[data-cap="identity.phone"]')?.textContent === '撤销');
  // Redrawn: still open where the admin left it, and one more counted.
  assert.equal(await caps.evaluate((d) => d.open), true, 'grants stay open after a change');
  const after = (await caps.locator('summary').textContent()).match(counted);
  assert.equal(Number(after[1]), Number(before[1]) + 1);
  assert.equal(after[2], before[2]);
  const wideP = await admin.evaluate(() => document.documentElement.scrollWidth);
  assert.ok(wideP <= 390, `the plugins page fits a phone's width (${wideP}px)`);
  await shot(admin, 'admin-plugins');

  step = 'an upgrade that asks for more shows the difference';
  await admin.setInputFiles('#wasm', HELLO_NEXT);
  await admin.locator('form input[type=submit][value="安装或升级插件（.wasm）"]').click();
  await admin.getByText('新版本新增请求：').waitFor();
  await admin.getByRole('cell', { name: 'device.gate' }).first().waitFor();
  await shot(admin, 'admin-upgrade-difference');

  step = 'admin console: places and residents';
  await admin.goto(`${URL_}/#/admin/tenants`);
  await admin.getByText('东村').first().waitFor();
  await admin.goto(`${URL_}/#/admin/people?tenant=dongcun`);
  await admin.getByRole('cell', { name: '张*' }).waitFor();
  // Tags in words, not their codes.
  await admin.getByRole('cell', { name: '老年人、独居' }).waitFor();
  await shot(admin, 'admin-people');

  step = 'admin console: devices, a new one with its secret shown once, a device\'s commands';
  await admin.goto(`${URL_}/#/admin/devices?tenant=dongcun`);
  await admin.getByRole('link', { name: 'dongcun-gate-1' }).waitFor();
  await admin.fill('#dev-id', 'dongcun-speaker-9');
  await admin.selectOption('#dev-kind', 'loudspeaker');
  await admin.fill('#dev-name', '东村广播');
  await admin.locator('form input[type=submit][value="登记设备"]').click();
  await admin.getByText(/设备密钥（只显示这一次/).waitFor();
  await admin.getByRole('link', { name: 'dongcun-speaker-9' }).waitFor();
  // On a phone the table's rows are cards: nothing to scroll sideways; statuses in words.
  assert.equal(await admin.locator('.table-wrap table').first().evaluate((e) => getComputedStyle(e).display), 'block');
  const wide = await admin.evaluate(() => document.documentElement.scrollWidth);
  assert.ok(wide <= 390, `the devices page fits a phone's width (${wide}px)`);
  await admin.getByText(/^启用 · /).first().waitFor();
  await shot(admin, 'admin-devices');
  await admin.getByRole('link', { name: 'dongcun-gate-1' }).click();
  await admin.locator('#device-commands').waitFor();

  // ---- a plugin page cannot lead the shell out of its plugin ---------------------------------
  step = 'crafted links to the API are refused, and the token goes nowhere';
  {
    // 李桂兰, signed in: links that climb out of a plugin to the API.
    const sent = [];
    const listen = (r) => {
      if (r.headers().authorization) sent.push(new URL(r.url()).pathname);
    };
    elder.on('request', listen);
    for (const crafted of [
      '#/p/dongcun/hello/.%2e/.%2e/api/v1/me',
      '#/p/dongcun/hello/%2E%2E/%2e./api/v1/people',
      '#/p/dongcun/hello/../../../api/v1/tenants',
      '#/p/dongcun/hello/a%2f..%2f..%2fapi',
    ]) {
      await elder.goto(`${URL_}/${crafted}`);
      await elder.getByText('这个链接不在本服务之内，已拦截。').waitFor();
    }
    await shot(elder, 'link-refused');
    elder.off('request', listen);
    const outside = sent.filter((p) => !p.startsWith('/t/dongcun/p/hello/'));
    assert.deepEqual(outside, [], `the token was sent outside the plugin: ${outside}`);
  }

  // ---- a new admin enrols their own authenticator -------------------------------------------
  step = 'a new admin signs in with the activation code and sets their own password';
  {
    const fresh = await newPage();
    await fresh.goto(`${URL_}/#/signin`);
    await fresh.fill('#phone', '13900000021');
    await fresh.fill('#password', 'Given-by-someone-1');
    await fresh.click('input[type=submit]');
    await fresh.getByRole('heading', { name: '首次登录：登记您的动态口令' }).waitFor();
    await shot(fresh, 'admin-enrol-start');
    await fresh.fill('#activation', ACTIVATION.toLowerCase().replace(/-/g, ' '));
    await fresh.fill('#new-password', 'My-own-secret-2');
    await fresh.click('input[type=submit]');
    step = 'the authenticator key is shown to its holder, and its first code signs in';
    await fresh.locator('#totp-secret').waitFor();
    const key = (await fresh.locator('#totp-secret').textContent()).replace(/\s+/g, '');
    assert.match(key, /^[A-Z2-7]{32}$/, `a base32 key: ${key}`);
    const wideE = await fresh.evaluate(() => document.documentElement.scrollWidth);
    assert.ok(wideE <= 390, `the enrolment page fits a phone's width (${wideE}px)`);
    await shot(fresh, 'admin-enrol-secret');
    await fresh.fill('#totp', totp(key));
    await fresh.click('input[type=submit]');
    await fresh.getByRole('heading', { name: /您好/ }).waitFor();
    step = 'the password someone else set no longer works';
    const again = await newPage();
    await again.goto(`${URL_}/#/signin`);
    await again.fill('#phone', '13900000021');
    await again.fill('#password', 'Given-by-someone-1');
    await again.click('input[type=submit]');
    await again.getByText(/手机号或密码\/验证码错误/).waitFor();
  }

  assert.deepEqual(errors, [], 'no script errors');
  console.log('browser tests passed; screenshots in', SHOTS);
} catch (e) {
  console.error(`FAILED at step "${step}": ${e.stack || e}`);
  if (errors.length) console.error('script errors:', errors);
  process.exitCode = 1;
} finally {
  await browser.close();
}
