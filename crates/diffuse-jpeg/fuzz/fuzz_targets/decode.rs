//! cargo-fuzz target `decode`: any bytes decode to pixels or an error, never a panic, a hang
//! or an allocation the file cannot justify; what decodes re-encodes and decodes again to an
//! image of the same size.
#![no_main]
use diffuse_jpeg::encode::{encode_rgb, EncodeOptions};
use diffuse_jpeg::decode_rgb;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(img) = decode_rgb(data) {
        let jpg = encode_rgb(img.width, img.height, &img.data, &EncodeOptions::default())
            .expect("decoded pixels encode");
        let back = decode_rgb(&jpg).expect("our own JPEG decodes");
        assert_eq!((back.width, back.height), (img.width, img.height));
    }
});
