//! The HTML report: a static site (`index.html`, a page per scenario or chaos case,
//! `coverage.html`) with no script, no network and no file it did not write; same runs, same
//! bytes. `site` lays out the pages, `timeline` and `axis` draw the SVG on `scale`, `checks`
//! the tables, `coverage` the fault map.

mod axis;
mod checks;
mod coverage;
mod scale;
mod site;
mod timeline;

pub use scale::{Piece, Scale};
pub use site::{Page, slugs, write_site, write_site_with};
