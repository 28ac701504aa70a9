//! The fonts paper letters are set in: DejaVu Sans and DejaVu Sans Bold
//! (Debian's `fonts-dejavu-core` 2.37; Bitstream Vera licence with DejaVu's
//! changes in the public domain, in `fonts/LICENSE`). They cover every
//! Latin letter Europe writes (ł, ś, ż, ő, ç, ß, …), Greek and Cyrillic.
//!
//! Each PDF embeds a subset of the glyphs it uses (typst's `subsetter`) as
//! a CID font (Type 0, Identity-H) with a ToUnicode map, so that what is
//! printed is what a reader, a screen reader or `pdftotext` extracts. No
//! shaping: one glyph per character, which is all Latin, Greek and
//! Cyrillic text needs.

use std::collections::BTreeMap;
use std::sync::LazyLock;

use pdf_writer::types::{CidFontType, FontFlags, SystemInfo, UnicodeCmap};
use pdf_writer::{Name, Pdf, Rect, Ref, Str};
use subsetter::GlyphRemapper;

/// One of the two faces, parsed once.
pub(crate) struct Face {
    postscript_name: &'static str,
    data: &'static [u8],
    face: ttf_parser::Face<'static>,
    /// The glyph a character outside the font prints as.
    replacement: ttf_parser::GlyphId,
}

/// Why a PDF's font could not be written (a broken font file in the
/// build: the tests load both).
#[derive(Debug, Clone, thiserror::Error)]
pub enum FontError {
    #[error("the font {0} cannot be read: {1}")]
    Unreadable(&'static str, String),
    #[error("the font {0} cannot be subset: {1}")]
    Subset(&'static str, String),
}

fn parse(postscript_name: &'static str, data: &'static [u8]) -> Result<Face, FontError> {
    let face = ttf_parser::Face::parse(data, 0)
        .map_err(|e| FontError::Unreadable(postscript_name, e.to_string()))?;
    let replacement = face
        .glyph_index('?')
        .ok_or_else(|| FontError::Unreadable(postscript_name, "no glyph for '?'".into()))?;
    Ok(Face {
        postscript_name,
        data,
        face,
        replacement,
    })
}

static REGULAR: LazyLock<Result<Face, FontError>> =
    LazyLock::new(|| parse("DejaVuSans", include_bytes!("fonts/DejaVuSans.ttf")));
static BOLD: LazyLock<Result<Face, FontError>> = LazyLock::new(|| {
    parse(
        "DejaVuSans-Bold",
        include_bytes!("fonts/DejaVuSans-Bold.ttf"),
    )
});

/// The regular and the bold face.
pub(crate) fn faces() -> Result<(&'static Face, &'static Face), FontError> {
    let regular = REGULAR.as_ref().map_err(Clone::clone)?;
    let bold = BOLD.as_ref().map_err(Clone::clone)?;
    Ok((regular, bold))
}

impl Face {
    fn glyph(&self, c: char) -> ttf_parser::GlyphId {
        self.face.glyph_index(c).unwrap_or(self.replacement)
    }

    /// A glyph's advance in thousandths of the font size (PDF's unit).
    fn advance(&self, glyph: ttf_parser::GlyphId) -> f32 {
        let units = f32::from(self.face.glyph_hor_advance(glyph).unwrap_or(0));
        units * 1000.0 / f32::from(self.face.units_per_em())
    }

    /// The width of `text` set at `size` points.
    pub(crate) fn width(&self, text: &str, size: f32) -> f32 {
        text.chars()
            .map(|c| self.advance(self.glyph(c)))
            .sum::<f32>()
            * size
            / 1000.0
    }

    fn to_pdf_units(&self, units: i16) -> f32 {
        f32::from(units) * 1000.0 / f32::from(self.face.units_per_em())
    }
}

/// The glyphs one PDF uses of one face, numbered as in its subset.
pub(crate) struct UsedGlyphs {
    face: &'static Face,
    remapper: GlyphRemapper,
    /// New glyph id → the character it was used for (its ToUnicode entry).
    chars: BTreeMap<u16, char>,
}

impl UsedGlyphs {
    pub(crate) fn new(face: &'static Face) -> UsedGlyphs {
        UsedGlyphs {
            face,
            // Glyph 0 (.notdef) stays glyph 0, as every font needs.
            remapper: GlyphRemapper::new(),
            chars: BTreeMap::new(),
        }
    }

    pub(crate) fn face(&self) -> &'static Face {
        self.face
    }

    /// `text` as a string of this font in the PDF: the subset's glyph ids,
    /// two bytes each (Identity-H).
    pub(crate) fn encode(&mut self, text: &str) -> Vec<u8> {
        let mut out = Vec::with_capacity(text.len() * 2);
        for c in text.chars() {
            let c = if c == '\t' { ' ' } else { c };
            let glyph = self.face.glyph(c);
            let new = self.remapper.remap(glyph.0);
            // A character the font lacks prints as '?' and reads as '?'.
            let read_as = if glyph == self.face.replacement {
                '?'
            } else {
                c
            };
            self.chars.entry(new).or_insert(read_as);
            out.extend_from_slice(&new.to_be_bytes());
        }
        out
    }

    /// Writes the font's objects: the Type 0 font at `ids.type0`, its CID
    /// font, descriptor, subset font file and ToUnicode map at the next
    /// four ids.
    pub(crate) fn write(&self, pdf: &mut Pdf, type0: Ref) -> Result<(), FontError> {
        let face = self.face;
        let (cid, descriptor, file, to_unicode) = (
            Ref::new(type0.get() + 1),
            Ref::new(type0.get() + 2),
            Ref::new(type0.get() + 3),
            Ref::new(type0.get() + 4),
        );
        let subset = subsetter::subset(face.data, 0, &self.remapper)
            .map_err(|e| FontError::Subset(face.postscript_name, e.to_string()))?;
        // A subset's name starts with six capitals that name the subset.
        let name = format!("{}+{}", subset_tag(&subset), face.postscript_name);
        let system_info = SystemInfo {
            registry: Str(b"Adobe"),
            ordering: Str(b"Identity"),
            supplement: 0,
        };

        pdf.type0_font(type0)
            .base_font(Name(name.as_bytes()))
            .encoding_predefined(Name(b"Identity-H"))
            .descendant_font(cid)
            .to_unicode(to_unicode);

        let widths: Vec<f32> = self
            .remapper
            .remapped_gids()
            .map(|old| face.advance(ttf_parser::GlyphId(old)))
            .collect();
        let mut cid_font = pdf.cid_font(cid);
        cid_font
            .subtype(CidFontType::Type2)
            .base_font(Name(name.as_bytes()))
            .system_info(system_info)
            .font_descriptor(descriptor)
            .default_width(0.0)
            .cid_to_gid_map_predefined(Name(b"Identity"));
        cid_font.widths().consecutive(0, widths);
        drop(cid_font);

        let bbox = face.face.global_bounding_box();
        let units = |v: i16| face.to_pdf_units(v);
        pdf.font_descriptor(descriptor)
            .name(Name(name.as_bytes()))
            .flags(FontFlags::NON_SYMBOLIC)
            .bbox(Rect::new(
                units(bbox.x_min),
                units(bbox.y_min),
                units(bbox.x_max),
                units(bbox.y_max),
            ))
            .italic_angle(0.0)
            .ascent(units(face.face.ascender()))
            .descent(units(face.face.descender()))
            .cap_height(units(face.face.capital_height().unwrap_or(729)))
            .stem_v(if face.face.is_bold() { 140.0 } else { 80.0 })
            .font_file2(file);

        let length = i32::try_from(subset.len()).unwrap_or(i32::MAX);
        pdf.stream(file, &deflate(&subset))
            .filter(pdf_writer::Filter::FlateDecode)
            .pair(Name(b"Length1"), length);

        let mut cmap = UnicodeCmap::new(Name(b"Estafette-UTF16"), system_info);
        for (glyph, c) in &self.chars {
            cmap.pair(*glyph, *c);
        }
        pdf.cmap(to_unicode, &cmap.finish());
        Ok(())
    }
}

/// A stream's bytes compressed as PDF's FlateDecode (zlib) wants them.
pub(crate) fn deflate(bytes: &[u8]) -> Vec<u8> {
    miniz_oxide::deflate::compress_to_vec_zlib(bytes, 6)
}

/// Six capitals from the subset's bytes: the same glyphs, the same tag.
fn subset_tag(subset: &[u8]) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in subset {
        hash = (hash ^ u64::from(*byte)).wrapping_mul(0x0100_0000_01b3);
    }
    (0..6)
        .map(|i| char::from(b'A' + ((hash >> (i * 5)) % 26) as u8))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_faces_load_and_have_every_letter_of_our_languages() {
        let (regular, bold) = faces().unwrap();
        for face in [regular, bold] {
            for c in "ĄĆĘŁŃÓŚŹŻąćęłńóśźż ÄÖÜäöüß ÀÂÆÇÈÉÊËÎÏÔŒÙÛÜŸàâæçèéêëîïôœùûüÿ ĳ €–„“”‘’ Ωω Жж"
                .chars()
                .filter(|c| !c.is_whitespace())
            {
                assert_ne!(
                    face.glyph(c),
                    face.replacement,
                    "{} has {c}",
                    face.postscript_name
                );
            }
        }
        assert!(bold.width("Łódź", 10.0) > regular.width("Łódź", 10.0));
    }

    #[test]
    fn a_character_the_font_lacks_prints_and_reads_as_a_question_mark() {
        let (regular, _) = faces().unwrap();
        let mut used = UsedGlyphs::new(regular);
        let text = used.encode("a\u{4e2d}");
        assert_eq!(text.len(), 4, "two glyphs, two bytes each");
        let question = used.encode("?");
        assert_eq!(&text[2..], &question[..], "the missing one is '?'");
        assert_eq!(
            used.chars.values().collect::<String>(),
            "a?",
            "and it reads as '?'"
        );
    }
}
