//! The image data sets `--data PATH` can name, told apart by what PATH holds.
//!
//! | layout | PATH holds | classes |
//! |---|---|---|
//! | [`Layout::Split`] | `PATH/{train,val}/<class>/…` (AFHQ as shipped; the course's layout) | the class folders |
//! | [`Layout::Classes`] | `PATH/<class>/…` (no split level) | the class folders |
//! | [`Layout::Flat`] | images, directly or in any sub-folders, none of them a class | none: unconditional |
//! | [`Layout::Edm`] | EDM's data set: a `.zip` archive or a folder of images with an optional `dataset.json` `{"labels": [[relative_path, class_index], …]}` | `dataset.json`'s indices, or none |
//!
//! Detection ([`detect`]), in this order: a file ending in `.zip` or a folder with
//! `dataset.json` is EDM's; a folder with a `train/` sub-folder is split; a folder with image
//! files directly inside is flat; a folder whose sub-folders hold images is one class per
//! sub-folder. Anything else is an error that names the layouts. `--layout` overrides it (EDM's
//! own folders, `00000/img00000000.png …` without `dataset.json`, look like classes: name them
//! `--layout edm` or `flat`).
//!
//! Images are found recursively (`.png`, `.jpg`, `.jpeg`, any case), sorted by path, decoded to
//! RGB and brought to `size`×`size` by [`Resize`]; an unreadable image is skipped with a warning
//! or, with `strict`, an error. An unconditional set has no class names and labels 0 (the null
//! class), so the network gets no class table.
use std::collections::{BTreeMap, HashMap};
use std::io::Read;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::image_folder::{class_folders, decode_labelled, ImageSource, Resize, Skipped};
use super::image_io::list_images;
use super::image_set::ImageSet;
use crate::{Error, Result};

/// How the images under `--data` are organised (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
#[serde(rename_all = "lowercase")]
pub enum Layout {
    /// `ROOT/{train,val}/<class>/*`: one folder per class under each split.
    Split,
    /// `ROOT/<class>/*`: one folder per class, no split level.
    Classes,
    /// Images anywhere under ROOT, no classes: unconditional training.
    Flat,
    /// EDM's data set: a zip archive or a folder, labels from an optional `dataset.json`.
    Edm,
}

impl Layout {
    pub fn describe(self) -> &'static str {
        match self {
            Layout::Split => "ROOT/{train,val}/<class>/*.png|jpg (one folder per class per split)",
            Layout::Classes => "ROOT/<class>/*.png|jpg (one folder per class)",
            Layout::Flat => "ROOT/**/*.png|jpg (a flat folder of images: unconditional)",
            Layout::Edm => {
                "EDM's data set: a .zip or a folder, with an optional dataset.json of labels"
            }
        }
    }
}

/// How to read a data set.
#[derive(Debug, Clone, PartialEq)]
pub struct DataOptions {
    /// The layout, or None to [`detect`] it.
    pub layout: Option<Layout>,
    /// The split read from a [`Layout::Split`] data set (`train`, `val`).
    pub split: String,
    /// Side of the square training images.
    pub size: usize,
    /// Keep the first N images (sorted by path) of each class, or of an unconditional set; 0
    /// keeps all. None: the reference's 3000 for a split data set (AFHQ), all otherwise.
    pub max_per_class: Option<usize>,
    /// Fail on an unreadable image instead of skipping it with a warning.
    pub strict: bool,
    /// Aspect-ratio policy.
    pub resize: Resize,
}

impl Default for DataOptions {
    fn default() -> Self {
        Self {
            layout: None,
            split: "train".into(),
            size: 64,
            max_per_class: None,
            strict: false,
            resize: Resize::Squash,
        }
    }
}

/// A loaded data set and how it was read.
pub struct Loaded {
    pub set: ImageSet,
    pub layout: Layout,
    /// Files that could not be decoded (not in `set`).
    pub skipped: Vec<Skipped>,
}

fn is_image_name(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    [".png", ".jpg", ".jpeg"].iter().any(|e| lower.ends_with(e))
}

/// The layout of `path` (see the module docs).
pub fn detect(path: &Path) -> Result<Layout> {
    let meta = std::fs::metadata(path).map_err(|e| Error::io(path, e))?;
    if meta.is_file() {
        let zip = path
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| e.eq_ignore_ascii_case("zip"));
        return if zip {
            Ok(Layout::Edm)
        } else {
            Err(no_layout(path, "a file that is not a .zip archive"))
        };
    }
    if path.join("dataset.json").is_file() {
        return Ok(Layout::Edm);
    }
    if path.join("train").is_dir() {
        return Ok(Layout::Split);
    }
    let mut sub_has_images = false;
    for entry in std::fs::read_dir(path).map_err(|e| Error::io(path, e))? {
        let entry = entry.map_err(|e| Error::io(path, e))?;
        let p = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') {
            continue;
        }
        if p.is_file() && is_image_name(&name) {
            return Ok(Layout::Flat);
        }
        if p.is_dir() && !sub_has_images && !list_images(&p)?.is_empty() {
            sub_has_images = true;
        }
    }
    if sub_has_images {
        Ok(Layout::Classes)
    } else {
        Err(no_layout(path, "no png/jpg/jpeg images"))
    }
}

fn no_layout(path: &Path, what: &str) -> Error {
    let layouts: Vec<String> = [Layout::Split, Layout::Classes, Layout::Flat, Layout::Edm]
        .iter()
        .map(|l| format!("  {}", l.describe()))
        .collect();
    Error::bad_file(
        path,
        format!(
            "{what}: not a data set in any layout diffuse reads:\n{}",
            layouts.join("\n")
        ),
    )
}

/// Reads the data set at `path` (see the module docs).
pub fn load(path: &Path, opts: &DataOptions) -> Result<Loaded> {
    if opts.size == 0 {
        return Err(Error::invalid("image size", "must be positive"));
    }
    let layout = match opts.layout {
        Some(l) => l,
        None => detect(path)?,
    };
    let cap = opts
        .max_per_class
        .unwrap_or(if layout == Layout::Split { 3000 } else { 0 });
    let (items, class_names) = match layout {
        Layout::Split => class_items(&path.join(&opts.split), cap)?,
        Layout::Classes => class_items(path, cap)?,
        Layout::Flat => {
            let mut files = list_images(path)?;
            if files.is_empty() {
                return Err(no_layout(path, "no png/jpg/jpeg images"));
            }
            truncate(&mut files, cap);
            (
                files
                    .into_iter()
                    .map(|p| (ImageSource::File(p), 0))
                    .collect(),
                Vec::new(),
            )
        }
        Layout::Edm => edm_items(path, cap)?,
    };
    let (images, labels, skipped) = decode_labelled(items, opts.size, opts.resize, opts.strict)?;
    if labels.is_empty() {
        let read = match layout {
            Layout::Split => path.join(&opts.split),
            _ => path.to_path_buf(),
        };
        return Err(Error::bad_file(read, "no readable images"));
    }
    let set = ImageSet {
        images,
        labels,
        class_names,
        channels: 3,
        height: opts.size,
        width: opts.size,
    };
    Ok(Loaded {
        set,
        layout,
        skipped,
    })
}

fn truncate<T>(v: &mut Vec<T>, cap: usize) {
    if cap > 0 {
        v.truncate(cap);
    }
}

type Items = (Vec<(ImageSource, usize)>, Vec<String>);

/// One class per sub-folder of `dir`, labels 1 … K in name order.
fn class_items(dir: &Path, cap: usize) -> Result<Items> {
    let classes = class_folders(dir)?;
    let mut items = Vec::new();
    for (i, (name, sub)) in classes.iter().enumerate() {
        let mut list = list_images(sub)?;
        if list.is_empty() {
            return Err(Error::bad_file(
                sub,
                format!("class folder '{name}' contains no png/jpg/jpeg images"),
            ));
        }
        truncate(&mut list, cap);
        items.extend(list.into_iter().map(|p| (ImageSource::File(p), i + 1)));
    }
    Ok((items, classes.into_iter().map(|(n, _)| n).collect()))
}

/// EDM's `dataset.json`: `{"labels": [[relative_path, class_index], …]}` or `{"labels": null}`.
#[derive(Deserialize)]
struct DatasetJson {
    labels: Option<Vec<(String, i64)>>,
}

/// Largest zip entry read (an image file, or `dataset.json`), uncompressed.
const ENTRY_LIMIT: u64 = 256 << 20;

/// EDM's data set: a zip archive (read in place, never unpacked) or a folder.
fn edm_items(path: &Path, cap: usize) -> Result<Items> {
    // (relative name with `/` separators, source), sorted by name as EDM sorts its file list.
    let mut entries: Vec<(String, ImageSource)> = Vec::new();
    let mut json: Option<Vec<u8>> = None;
    if path.is_file() {
        let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
        let mut zip = zip::ZipArchive::new(std::io::BufReader::new(file))
            .map_err(|e| Error::bad_file(path, format!("not a readable zip archive: {e}")))?;
        for i in 0..zip.len() {
            let mut f = zip
                .by_index(i)
                .map_err(|e| Error::bad_file(path, format!("zip entry {i}: {e}")))?;
            if f.is_dir() {
                continue;
            }
            let name = f
                .name()
                .map_err(|e| Error::bad_file(path, format!("zip entry {i}: {e}")))?
                .to_string();
            let wanted = name == "dataset.json" || is_image_name(&name);
            if !wanted {
                continue;
            }
            // Read at most ENTRY_LIMIT bytes: a zip entry may inflate far beyond what its
            // header claims (a zip bomb), and nothing is decoded before it is all read.
            let mut bytes = Vec::with_capacity(f.size().min(1 << 26) as usize);
            (&mut f)
                .take(ENTRY_LIMIT + 1)
                .read_to_end(&mut bytes)
                .map_err(|e| Error::bad_file(path, format!("zip entry {name}: {e}")))?;
            if bytes.len() as u64 > ENTRY_LIMIT {
                return Err(Error::bad_file(
                    path,
                    format!("zip entry {name} inflates to more than {ENTRY_LIMIT} bytes"),
                ));
            }
            if name == "dataset.json" {
                json = Some(bytes);
            } else {
                let shown = path.join(&name);
                entries.push((name, ImageSource::Bytes { name: shown, bytes }));
            }
        }
    } else {
        let json_path = path.join("dataset.json");
        if json_path.is_file() {
            json = Some(std::fs::read(&json_path).map_err(|e| Error::io(&json_path, e))?);
        }
        for p in list_images(path)? {
            let rel = p
                .strip_prefix(path)
                .unwrap_or(&p)
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect::<Vec<_>>()
                .join("/");
            entries.push((rel, ImageSource::File(p)));
        }
    }
    entries.sort_by(|a, b| a.0.cmp(&b.0));
    if entries.is_empty() {
        return Err(no_layout(path, "no png/jpg/jpeg images"));
    }
    let labels = match json {
        None => None,
        Some(bytes) => {
            let where_ = path.join("dataset.json");
            let parsed: DatasetJson = crate::files::parse_json(&where_, &bytes)?;
            parsed.labels.map(|l| (where_, l))
        }
    };
    let Some((json_path, labels)) = labels else {
        let mut items: Vec<(ImageSource, usize)> =
            entries.into_iter().map(|(_, s)| (s, 0)).collect();
        truncate(&mut items, cap);
        return Ok((items, Vec::new()));
    };
    let mut by_name: HashMap<String, usize> = HashMap::with_capacity(labels.len());
    for (name, class) in labels {
        if class < 0 {
            return Err(Error::bad_file(
                &json_path,
                format!("label of {name} is {class}; class indices start at 0"),
            ));
        }
        by_name.insert(name.replace('\\', "/"), class as usize);
    }
    let k = by_name.values().max().map_or(0, |m| m + 1);
    let mut per_class: BTreeMap<usize, usize> = BTreeMap::new();
    let mut items = Vec::with_capacity(entries.len());
    for (name, src) in entries {
        let Some(&class) = by_name.get(&name) else {
            return Err(Error::bad_file(
                &json_path,
                format!("has no label for the image {name}"),
            ));
        };
        let n = per_class.entry(class).or_default();
        if cap == 0 || *n < cap {
            *n += 1;
            items.push((src, class + 1));
        }
    }
    // EDM's class indices name the classes.
    Ok((items, (0..k).map(|c| c.to_string()).collect()))
}
