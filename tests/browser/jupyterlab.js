// A user in a real browser: Debian's Chromium, driven by playwright-core (no browser download),
// logs in at the hub's login form, waits while the hub spawns the server, and saves a picture of
// JupyterLab once its launcher is drawn. Prints {"url", "title"} as JSON.
//
//   node jupyterlab.js HUB_URL USER PASSWORD SCREENSHOT.png
const { chromium } = require("playwright-core");

async function main() {
  const [hub, user, password, out] = process.argv.slice(2);
  const browser = await chromium.launch({
    executablePath: "/usr/bin/chromium",
    // Root in CI has no user namespace sandbox to give; the machine has no network beyond the
    // hub, so Chromium's own background connections are switched off.
    args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  });
  try {
    const page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
    await page.goto(new URL("hub/login", hub).href);
    await page.fill("#username_input", user);
    await page.fill("#password_input", password);
    await page.click("#login_submit");
    await page.waitForURL(/\/user\/[^/]+\/lab/, { timeout: 240000 });
    await page.waitForSelector(".jp-LauncherCard", { timeout: 120000 });
    await page.screenshot({ path: out });
    console.log(JSON.stringify({ url: page.url(), title: await page.title() }));
  } finally {
    await browser.close();
  }
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
