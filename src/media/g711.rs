//! ITU-T G.711 µ-law (PCMU) and A-law (PCMA) codecs, implemented with bit
//! math so we carry no lookup tables and no external codec dependency.

/// Telephony codecs negotiated in SDP; both are 8 kHz, 1 byte per sample.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Codec {
    /// G.711 µ-law, static RTP payload type 0.
    Pcmu,
    /// G.711 A-law, static RTP payload type 8.
    Pcma,
}

impl Codec {
    /// Static RTP payload type (RFC 3551), used in SDP and RTP headers.
    pub fn payload_type(self) -> u8 {
        match self {
            Codec::Pcmu => 0,
            Codec::Pcma => 8,
        }
    }

    /// Encoding name as used in SDP `a=rtpmap`.
    pub fn name(self) -> &'static str {
        match self {
            Codec::Pcmu => "PCMU",
            Codec::Pcma => "PCMA",
        }
    }

    /// Maps a static payload type back to a codec (for received RTP).
    pub fn from_payload_type(pt: u8) -> Option<Codec> {
        match pt {
            0 => Some(Codec::Pcmu),
            8 => Some(Codec::Pcma),
            _ => None,
        }
    }

    /// The encoded byte for a zero sample; used to pad frames with silence.
    pub fn silence_byte(self) -> u8 {
        match self {
            Codec::Pcmu => 0xFF,
            Codec::Pcma => 0xD5,
        }
    }
}

/// Appends the G.711 encoding of `pcm` (one byte per sample) to `out`.
pub fn encode(codec: Codec, pcm: &[i16], out: &mut Vec<u8>) {
    out.reserve(pcm.len());
    match codec {
        Codec::Pcmu => out.extend(pcm.iter().map(|&s| linear_to_ulaw(s))),
        Codec::Pcma => out.extend(pcm.iter().map(|&s| linear_to_alaw(s))),
    }
}

/// Appends the decoded 16-bit linear samples of `data` to `out`.
pub fn decode(codec: Codec, data: &[u8], out: &mut Vec<i16>) {
    out.reserve(data.len());
    match codec {
        Codec::Pcmu => out.extend(data.iter().map(|&b| ulaw_to_linear(b))),
        Codec::Pcma => out.extend(data.iter().map(|&b| alaw_to_linear(b))),
    }
}

/// µ-law bias added before the segment search (G.711 / classic reference).
const ULAW_BIAS: i32 = 0x84;
/// Largest magnitude that still fits the top µ-law segment after biasing.
const ULAW_CLIP: i32 = 32635;

/// Encodes one sample to µ-law.
pub fn linear_to_ulaw(sample: i16) -> u8 {
    let mut mag = i32::from(sample);
    let sign: u8 = if mag < 0 {
        mag = -mag;
        0x80
    } else {
        0
    };
    mag = mag.min(ULAW_CLIP) + ULAW_BIAS;
    // mag >> 7 is in 1..=255, so the exponent (highest set bit) is 0..=7.
    let exponent = 31 - ((mag >> 7) as u32).leading_zeros();
    let mantissa = ((mag >> (exponent + 3)) & 0x0F) as u8;
    !(sign | ((exponent as u8) << 4) | mantissa)
}

/// Decodes one µ-law byte; output magnitude is at most 32124.
pub fn ulaw_to_linear(byte: u8) -> i16 {
    let u = !byte;
    let exponent = u32::from((u >> 4) & 0x07);
    let mantissa = i32::from(u & 0x0F);
    let mag = (((mantissa << 3) + ULAW_BIAS) << exponent) - ULAW_BIAS;
    // |mag| <= 32124, always fits in i16.
    if u & 0x80 != 0 {
        -mag as i16
    } else {
        mag as i16
    }
}

/// Encodes one sample to A-law (13-bit magnitude, even bits inverted).
pub fn linear_to_alaw(sample: i16) -> u8 {
    let mut pcm = i32::from(sample) >> 3;
    let mask: u8 = if pcm >= 0 {
        0xD5
    } else {
        pcm = -pcm - 1;
        0x55
    };
    // pcm is in 0..=4095 here; segment = position of highest bit above bit 4.
    let segment = match pcm {
        0..=0x1F => 0u32,
        _ => 32 - (pcm as u32).leading_zeros() - 5,
    };
    let mantissa = if segment < 2 {
        (pcm >> 1) & 0x0F
    } else {
        (pcm >> segment) & 0x0F
    } as u8;
    (((segment as u8) << 4) | mantissa) ^ mask
}

/// Decodes one A-law byte; output magnitude is at most 32256.
pub fn alaw_to_linear(byte: u8) -> i16 {
    let a = byte ^ 0x55;
    let mut mag = i32::from(a & 0x0F) << 4;
    let segment = u32::from((a & 0x70) >> 4);
    match segment {
        0 => mag += 8,
        1 => mag += 0x108,
        _ => mag = (mag + 0x108) << (segment - 1),
    }
    if a & 0x80 != 0 {
        mag as i16
    } else {
        -mag as i16
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all_samples() -> impl Iterator<Item = i16> {
        i16::MIN..=i16::MAX
    }

    #[test]
    fn codec_metadata() {
        assert_eq!(Codec::Pcmu.payload_type(), 0);
        assert_eq!(Codec::Pcma.payload_type(), 8);
        assert_eq!(Codec::Pcmu.name(), "PCMU");
        assert_eq!(Codec::Pcma.name(), "PCMA");
        assert_eq!(Codec::from_payload_type(0), Some(Codec::Pcmu));
        assert_eq!(Codec::from_payload_type(8), Some(Codec::Pcma));
        assert_eq!(Codec::from_payload_type(9), None);
        assert_eq!(Codec::Pcmu.silence_byte(), linear_to_ulaw(0));
        assert_eq!(Codec::Pcma.silence_byte(), linear_to_alaw(0));
    }

    #[test]
    fn ulaw_known_code_points() {
        assert_eq!(linear_to_ulaw(0), 0xFF);
        assert_eq!(linear_to_ulaw(-1), 0x7F);
        assert_eq!(ulaw_to_linear(0xFF), 0);
        assert_eq!(ulaw_to_linear(0x7F), 0);
        assert_eq!(ulaw_to_linear(0x80), 32124);
        assert_eq!(ulaw_to_linear(0x00), -32124);
        assert_eq!(linear_to_ulaw(i16::MAX), 0x80);
        assert_eq!(linear_to_ulaw(i16::MIN), 0x00);
        // First step of segment 0: 8 linear units per code.
        assert_eq!(ulaw_to_linear(0xFE), 8);
        // First code of segment 1.
        assert_eq!(ulaw_to_linear(0xEF), 132);
    }

    #[test]
    fn alaw_known_code_points() {
        assert_eq!(linear_to_alaw(0), 0xD5);
        assert_eq!(linear_to_alaw(-1), 0x55);
        assert_eq!(alaw_to_linear(0xD5), 8);
        assert_eq!(alaw_to_linear(0x55), -8);
        assert_eq!(alaw_to_linear(0xAA), 32256);
        assert_eq!(alaw_to_linear(0x2A), -32256);
        assert_eq!(linear_to_alaw(i16::MAX), 0xAA);
        assert_eq!(linear_to_alaw(i16::MIN), 0x2A);
    }

    #[test]
    fn every_code_round_trips_through_linear() {
        for b in 0..=255u8 {
            // 0x7F is µ-law "negative zero"; it decodes to 0 which encodes as 0xFF.
            let expect = if b == 0x7F { 0xFF } else { b };
            assert_eq!(linear_to_ulaw(ulaw_to_linear(b)), expect, "ulaw {b:#x}");
            assert_eq!(linear_to_alaw(alaw_to_linear(b)), b, "alaw {b:#x}");
        }
    }

    #[test]
    fn ulaw_round_trip_error_is_half_a_step() {
        for s in all_samples() {
            let d = ulaw_to_linear(linear_to_ulaw(s));
            let mag = i32::from(s).abs().min(ULAW_CLIP);
            let clipped = if s < 0 { -mag } else { mag };
            let err = (clipped - i32::from(d)).abs();
            // Half a quantisation step is (mag + bias) / 32 at most.
            assert!(err <= (mag + ULAW_BIAS) / 32, "s={s} d={d} err={err}");
        }
    }

    #[test]
    fn alaw_round_trip_error_is_bounded() {
        for s in all_samples() {
            let d = alaw_to_linear(linear_to_alaw(s));
            let err = (i32::from(s) - i32::from(d)).abs();
            // Half a step: 8 in the two lowest segments, else <= |s| / 32.
            let bound = 8.max(i32::from(s).abs() / 32);
            assert!(err <= bound, "s={s} d={d} err={err}");
        }
    }

    #[test]
    fn quantisation_is_monotonic() {
        for codec in [Codec::Pcmu, Codec::Pcma] {
            let pcm: Vec<i16> = all_samples().collect();
            let mut enc = Vec::new();
            encode(codec, &pcm, &mut enc);
            let mut dec = Vec::new();
            decode(codec, &enc, &mut dec);
            assert_eq!(dec.len(), pcm.len());
            for w in dec.windows(2) {
                assert!(w[0] <= w[1], "{codec:?} not monotonic: {w:?}");
            }
            // Full range maps to both signs.
            assert!(dec[0] < 0 && dec[dec.len() - 1] > 0);
        }
    }

    #[test]
    fn encode_decode_append_to_existing_buffers() {
        let mut enc = vec![1u8, 2];
        encode(Codec::Pcmu, &[0, 1000, -1000], &mut enc);
        assert_eq!(enc.len(), 5);
        assert_eq!(&enc[..3], &[1, 2, 0xFF]);
        let mut dec = vec![7i16];
        decode(Codec::Pcmu, &enc[2..], &mut dec);
        assert_eq!(dec[0], 7);
        assert_eq!(dec[1], 0);
        assert!((i32::from(dec[2]) - 1000).abs() <= 32);
        assert!((i32::from(dec[3]) + 1000).abs() <= 32);
    }
}
