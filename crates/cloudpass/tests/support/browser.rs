//! A real headless Chromium for page tests, driven over the DevTools protocol
//! (`chromiumoxide`). The browser is Debian's (`apt-get install -y chromium`, which `.ci/run`
//! does) or `$CLOUDPASS_CHROMIUM`; a missing browser fails the test and says how to install
//! it — page tests never skip. Each browser gets its own profile directory, so tests run in
//! parallel. Screenshots go to `target/screenshots/` for a person to look at.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use chromiumoxide::Page;
use chromiumoxide::browser::{Browser as Chromium, BrowserConfig};
use chromiumoxide::cdp::browser_protocol::input::InsertTextParams;
use chromiumoxide::page::ScreenshotParams;
use futures_util::StreamExt;
use tokio::task::JoinHandle;

/// How long a page may take to show what a test waits for.
const WAIT: Duration = Duration::from_secs(20);
const POLL: Duration = Duration::from_millis(50);

pub struct Browser {
    chromium: Chromium,
    events: JoinHandle<()>,
}

fn executable() -> PathBuf {
    let path = std::env::var_os("CLOUDPASS_CHROMIUM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"));
    assert!(
        path.exists(),
        "page tests need Chromium at {} (apt-get install -y chromium, or set CLOUDPASS_CHROMIUM)",
        path.display()
    );
    path
}

impl Browser {
    pub async fn launch() -> Browser {
        let profile = std::env::temp_dir().join(format!(
            "cloudpass-chromium-{}-{}",
            std::process::id(),
            super::app::unique_suffix()
        ));
        let config = BrowserConfig::builder()
            .chrome_executable(executable())
            .no_sandbox()
            .user_data_dir(profile)
            .window_size(900, 1100)
            .viewport(None)
            .arg("--disable-gpu")
            .arg("--disable-dev-shm-usage")
            .build()
            .expect("a browser configuration");
        let (chromium, mut handler) = Chromium::launch(config)
            .await
            .expect("Chromium starts (is the chromium package installed?)");
        let events = tokio::spawn(async move {
            while let Some(event) = handler.next().await {
                if event.is_err() {
                    break;
                }
            }
        });
        Browser { chromium, events }
    }

    pub async fn open(&self, url: &str) -> Page {
        self.chromium.new_page(url).await.expect("a new page")
    }

    pub async fn close(mut self) {
        let _ = self.chromium.close().await;
        let _ = self.chromium.wait().await;
        self.events.abort();
    }
}

/// Waits until `selector` is on the page (after a navigation, say) and returns its text.
pub async fn wait_for(page: &Page, selector: &str) -> String {
    let start = Instant::now();
    loop {
        if let Ok(element) = page.find_element(selector).await {
            // An input has no text: being there is enough.
            return element
                .inner_text()
                .await
                .ok()
                .flatten()
                .unwrap_or_default();
        }
        if start.elapsed() > WAIT {
            let url = page.url().await.ok().flatten().unwrap_or_default();
            let html = page.content().await.unwrap_or_default();
            panic!("{selector} did not appear on {url} within {WAIT:?}:\n{html}");
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Types `text` into the input `selector`, as a person would.
pub async fn fill(page: &Page, selector: &str, text: &str) {
    let element = page
        .find_element(selector)
        .await
        .unwrap_or_else(|e| panic!("{selector}: {e}"));
    element.click().await.unwrap();
    if text.is_ascii() {
        element.type_str(text).await.unwrap();
    } else {
        // Keystrokes exist for a keyboard's characters only; the rest (a Chinese name) comes
        // as an input method would send it.
        page.execute(InsertTextParams::new(text)).await.unwrap();
    }
}

/// Clicks `selector` (a submit button or a link) and waits for the page it leads to, which
/// shows `expect`.
pub async fn click_to(page: &Page, selector: &str, expect: &str) -> String {
    // The old document is marked, so that a step shown again (the same URL, the same
    // elements) is told apart from the page before the click.
    page.evaluate("window.__cloudpassOld = true").await.unwrap();
    page.find_element(selector)
        .await
        .unwrap_or_else(|e| panic!("{selector}: {e}"))
        .click()
        .await
        .unwrap();
    let start = Instant::now();
    loop {
        let old = page
            .evaluate("window.__cloudpassOld === true")
            .await
            .ok()
            .and_then(|value| value.into_value::<bool>().ok());
        if old == Some(false) {
            break;
        }
        assert!(
            start.elapsed() < WAIT,
            "clicking {selector} led nowhere within {WAIT:?}"
        );
        tokio::time::sleep(POLL).await;
    }
    wait_for(page, expect).await
}

/// The text of `selector`, if it is on the page.
pub async fn text(page: &Page, selector: &str) -> Option<String> {
    page.find_element(selector)
        .await
        .ok()?
        .inner_text()
        .await
        .ok()
        .flatten()
}

/// Saves a full-page screenshot as `target/screenshots/{name}.png`.
pub async fn screenshot(page: &Page, name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../target/screenshots")
        .canonicalize()
        .unwrap_or_else(|_| {
            let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/screenshots");
            std::fs::create_dir_all(&dir).unwrap();
            dir
        });
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!("{name}.png"));
    page.save_screenshot(ScreenshotParams::builder().full_page(true).build(), &path)
        .await
        .unwrap();
    path
}
