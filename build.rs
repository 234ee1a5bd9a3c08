//! Builds the web UI's assets into `OUT_DIR` for `src/web` to embed.
//!
//! ```text
//! ui/package-lock.json --npm ci (only when ui/node_modules is missing or the lock changed)--> ui/node_modules
//! ui/src/*  +  ui/node_modules/uplot/dist/{uPlot.iife.min.js, uPlot.min.css}
//!     --content-hashed names, index.html rewritten--> OUT_DIR/ui/*  +  OUT_DIR/ui_assets.rs
//! ```
//!
//! Without npm (or with `SCALER_NO_UI=1`) the binary gets one page saying
//! how to build the UI, and cargo prints a warning. `npm ci` failing (no
//! network and no npm cache, say) stops the build with the reason.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Our own assets, under `ui/src/`.
const OWN: [&str; 3] = ["index.html", "app.js", "style.css"];
/// Assets taken from npm packages, as (path under `ui/node_modules`, served name).
const VENDOR: [(&str, &str); 2] = [("uplot/dist/uPlot.iife.min.js", "uPlot.js"), ("uplot/dist/uPlot.min.css", "uPlot.css")];
/// Copied into `node_modules` after a successful `npm ci`: the lock it was installed from.
const STAMP: &str = ".scaler-installed-lock.json";

fn main() {
    let root = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_default());
    let out = PathBuf::from(std::env::var_os("OUT_DIR").unwrap_or_default());
    let ui = root.join("ui");
    println!("cargo:rerun-if-env-changed=SCALER_NO_UI");
    println!("cargo:rerun-if-changed=ui/package.json");
    println!("cargo:rerun-if-changed=ui/package-lock.json");
    for f in OWN {
        println!("cargo:rerun-if-changed=ui/src/{f}");
    }
    let stamp = ui.join("node_modules").join(STAMP);
    if !no_ui() {
        // Deleting node_modules or a new `npm ci` re-runs this script; while
        // the stamp is missing (no npm yet) every build looks for npm again.
        println!("cargo:rerun-if-changed=ui/node_modules/{STAMP}");
    }
    let assets = match build(&ui, &stamp) {
        Ok(assets) => assets,
        Err(Fallback(why)) => {
            println!("cargo:warning=building scaler without its web UI: {why}; the daemon's `/` will say how to build it (install Node.js and npm, then `cargo build` again)");
            vec![Asset { name: "index.html".into(), bytes: placeholder(&why).into_bytes() }]
        }
    };
    if let Err(e) = write(&out, &assets) {
        eprintln!("error: cannot write the UI assets into {}: {e}", out.display());
        std::process::exit(1);
    }
}

/// Why the UI is left out (the build goes on without it).
struct Fallback(String);

struct Asset {
    name: String,
    bytes: Vec<u8>,
}

fn build(ui: &Path, stamp: &Path) -> Result<Vec<Asset>, Fallback> {
    if no_ui() {
        return Err(Fallback("`SCALER_NO_UI` is set".into()));
    }
    let lock = read(&ui.join("package-lock.json"));
    if fs::read(stamp).ok() != Some(lock.clone()) {
        install(ui, stamp, &lock)?;
    }
    // Vendor files first: their hashed names go into index.html.
    let mut assets = Vec::new();
    for (from, name) in VENDOR {
        assets.push(hashed(name, read(&ui.join("node_modules").join(from))));
    }
    for f in OWN.iter().filter(|f| **f != "index.html") {
        assets.push(hashed(f, read(&ui.join("src").join(f))));
    }
    let mut index = String::from_utf8_lossy(&read(&ui.join("src/index.html"))).into_owned();
    for a in &assets {
        let plain = plain_name(&a.name);
        let marker = format!("{{{{{plain}}}}}");
        if !index.contains(&marker) {
            fail(&format!("ui/src/index.html does not reference `{marker}`"));
        }
        index = index.replace(&marker, &format!("assets/{}", a.name));
    }
    assets.push(Asset { name: "index.html".into(), bytes: index.into_bytes() });
    Ok(assets)
}

/// `SCALER_NO_UI` set (and not `0`): build without the UI on purpose.
fn no_ui() -> bool {
    std::env::var_os("SCALER_NO_UI").is_some_and(|v| !v.is_empty() && v != "0")
}

/// `npm ci` in `ui/`, offline-friendly (the npm cache first).
fn install(ui: &Path, stamp: &Path, lock: &[u8]) -> Result<(), Fallback> {
    let npm = std::env::var_os("NPM").unwrap_or_else(|| "npm".into());
    let version = Command::new(&npm).arg("--version").output();
    if !version.is_ok_and(|o| o.status.success()) {
        return Err(Fallback("npm was not found on PATH".into()));
    }
    let status = Command::new(&npm)
        .args(["ci", "--prefer-offline", "--no-audit", "--no-fund", "--loglevel=error"])
        .current_dir(ui)
        .status();
    match status {
        Ok(s) if s.success() => {}
        Ok(s) => fail(&format!("`npm ci` in {} failed ({s}); fix it, or build without the UI with SCALER_NO_UI=1", ui.display())),
        Err(e) => fail(&format!("cannot run `npm ci` in {}: {e}", ui.display())),
    }
    if let Err(e) = fs::write(stamp, lock) {
        fail(&format!("cannot write {}: {e}", stamp.display()));
    }
    Ok(())
}

fn read(path: &Path) -> Vec<u8> {
    fs::read(path).unwrap_or_else(|e| fail(&format!("cannot read {}: {e}", path.display())))
}

fn fail(message: &str) -> ! {
    eprintln!("error: {message}");
    std::process::exit(1)
}

/// `app.js` -> `app.1a2b3c4d5e6f7a8b.js` (FNV-1a of the content): assets can be cached for good.
fn hashed(name: &str, bytes: Vec<u8>) -> Asset {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in &bytes {
        h = (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3);
    }
    let (stem, ext) = name.rsplit_once('.').unwrap_or((name, ""));
    Asset { name: format!("{stem}.{h:016x}.{ext}"), bytes }
}

/// `app.1a2b3c4d5e6f7a8b.js` -> `app.js`.
fn plain_name(hashed: &str) -> String {
    let parts: Vec<&str> = hashed.split('.').collect();
    match parts.as_slice() {
        [stem @ .., _hash, ext] => format!("{}.{ext}", stem.join(".")),
        _ => hashed.to_string(),
    }
}

fn write(out: &Path, assets: &[Asset]) -> std::io::Result<()> {
    let dir = out.join("ui");
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir)?;
    let mut table = String::from("/// The UI's files: (served name, bytes); `index.html` is the page.\npub(crate) static ASSETS: &[(&str, &[u8])] = &[\n");
    for a in assets {
        let path = dir.join(&a.name);
        fs::write(&path, &a.bytes)?;
        table.push_str(&format!("    ({:?}, include_bytes!({:?})),\n", a.name, path.display().to_string()));
    }
    table.push_str("];\n");
    fs::write(out.join("ui_assets.rs"), table)
}

fn placeholder(why: &str) -> String {
    let why = why.replace('&', "&amp;").replace('<', "&lt;");
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>scaler: web UI not built</title></head>\
         <body><h1>This scaler was built without its web UI</h1><p>Reason: {why}.</p>\
         <p>Install Node.js and npm (Debian: <code>apt-get install nodejs npm</code>), then run <code>cargo build --release</code> again: \
         the build runs <code>npm ci</code> in <code>ui/</code> and embeds the pages. The API under <code>/api/v1</code> works without it.</p></body></html>\n"
    )
}
