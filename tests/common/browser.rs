//! Headless Chromium driven through ChromeDriver (fantoccini), for the reader and console
//! browser tests: start the driver, open a browser at a width, take screenshots.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::ClientBuilder;

/// A running ChromeDriver on a free port. Killed on drop.
pub struct Driver(Child, u16);

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub fn start_chromedriver() -> Driver {
    let port = super::free_port();
    let child = Command::new("chromedriver")
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("browser tests need chromedriver (apt-get install chromium-driver)");
    let deadline = Instant::now() + Duration::from_secs(15);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "chromedriver did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    Driver(child, port)
}

/// A browser whose viewport is `width` CSS pixels wide. Below 500 px (where a headless window
/// cannot go) the page is laid out as on a phone of that width, through device emulation.
pub async fn browser(driver: &Driver, width: u32, profile: &Path) -> fantoccini::Client {
    browser_with(driver, width, profile, true).await
}

/// Like [`browser`], with JavaScript turned off when `javascript` is false (pages that must
/// work without it).
pub async fn browser_with(
    driver: &Driver,
    width: u32,
    profile: &Path,
    javascript: bool,
) -> fantoccini::Client {
    let mut args = super::chromium_args(profile);
    args.push(format!("--window-size={},1400", width.max(500)));
    let mut options = serde_json::json!({
        "binary": super::chromium().display().to_string(),
        "args": args,
    });
    if !javascript {
        options["prefs"] =
            serde_json::json!({ "profile.managed_default_content_settings.javascript": 2 });
    }
    if width < 500 {
        options["mobileEmulation"] = serde_json::json!({
            "deviceMetrics": { "width": width, "height": 1400, "pixelRatio": 1.0 }
        });
    }
    let caps = serde_json::json!({ "goog:chromeOptions": options });
    // ChromeDriver speaks plain HTTP on loopback: no TLS stack needed.
    ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(caps.as_object().unwrap().clone())
        .connect(&format!("http://127.0.0.1:{}", driver.1))
        .await
        .expect("connecting to chromedriver")
}

/// Saves a PNG of the viewport as `dir/name.png`.
pub async fn shot(client: &fantoccini::Client, dir: &Path, name: &str) {
    let png = client.screenshot().await.unwrap();
    assert!(png.starts_with(b"\x89PNG"));
    std::fs::write(dir.join(format!("{name}.png")), png).unwrap();
}

/// A Chrome DevTools command through ChromeDriver (`goog/cdp/execute`): answers as soon as
/// Chromium has taken it, without ChromeDriver's own checks, which need JavaScript.
#[derive(Debug)]
struct Cdp(serde_json::Value);

impl fantoccini::wd::WebDriverCompatibleCommand for Cdp {
    fn endpoint(
        &self,
        base_url: &url::Url,
        session_id: Option<&str>,
    ) -> Result<url::Url, url::ParseError> {
        base_url.join(&format!(
            "session/{}/goog/cdp/execute",
            session_id.unwrap_or_default()
        ))
    }

    fn method_and_body(&self, _: &url::Url) -> (axum::http::Method, Option<String>) {
        (axum::http::Method::POST, Some(self.0.to_string()))
    }
}

/// A left click at (`x`, `y`) CSS pixels of the viewport, as the mouse makes it: works on a
/// page with JavaScript off (WebDriver's element click and actions do not).
pub async fn click_at(client: &fantoccini::Client, x: f64, y: f64) {
    for kind in ["mouseMoved", "mousePressed", "mouseReleased"] {
        client
            .issue_cmd(Cdp(serde_json::json!({
                "cmd": "Input.dispatchMouseEvent",
                "params": { "type": kind, "x": x, "y": y, "button": "left", "clickCount": 1 },
            })))
            .await
            .unwrap_or_else(|e| panic!("{kind} at ({x}, {y}): {e}"));
    }
}
