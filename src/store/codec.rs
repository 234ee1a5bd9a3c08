//! Sealed chunks of samples: one series' timestamps and values compressed
//! with `pco` (pcodec), each column on its own.
//!
//! Timestamps (`i64` ms) compress to a few bits per sample because pco
//! detects the delta order (a steady interval becomes near-constant second
//! deltas); values (`f64`) use pco's float modes (integers stored as floats,
//! two-decimal gauges and slowly changing values all shrink well). See
//! `docs/decisions.md` for the measured figures and why pco and not a
//! hand-written Gorilla encoder.

/// A chunk could not be encoded or decoded.
#[derive(Debug, thiserror::Error)]
#[error("sample chunk codec: {0}")]
pub struct CodecError(String);

/// Compresses one column of timestamps.
pub fn encode_ts(ts: &[i64]) -> Result<Vec<u8>, CodecError> {
    pco::standalone::simple_compress(ts, &pco::ChunkConfig::default()).map_err(|e| CodecError(e.to_string()))
}

/// Compresses one column of values.
pub fn encode_values(values: &[f64]) -> Result<Vec<u8>, CodecError> {
    pco::standalone::simple_compress(values, &pco::ChunkConfig::default()).map_err(|e| CodecError(e.to_string()))
}

/// Decompresses timestamps.
pub fn decode_ts(bytes: &[u8]) -> Result<Vec<i64>, CodecError> {
    pco::standalone::simple_decompress(bytes).map_err(|e| CodecError(e.to_string()))
}

/// Decompresses values.
pub fn decode_values(bytes: &[u8]) -> Result<Vec<f64>, CodecError> {
    pco::standalone::simple_decompress(bytes).map_err(|e| CodecError(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_exactly() {
        let ts: Vec<i64> = (0..1000).map(|i| 1_704_067_200_000 + i * 10_000 + (i % 7)).collect();
        let vals: Vec<f64> = (0..1000).map(|i| (i as f64 * 0.37).sin() * 100.0 + 0.01).collect();
        assert_eq!(decode_ts(&encode_ts(&ts).unwrap()).unwrap(), ts);
        let back = decode_values(&encode_values(&vals).unwrap()).unwrap();
        assert_eq!(back.iter().map(|v| v.to_bits()).collect::<Vec<_>>(), vals.iter().map(|v| v.to_bits()).collect::<Vec<_>>());
        assert_eq!(decode_ts(&encode_ts(&[]).unwrap()).unwrap(), Vec::<i64>::new());
        assert_eq!(decode_values(&encode_values(&[-0.0, 1e300, 5e-324]).unwrap()).unwrap()[2], 5e-324);
    }

    #[test]
    fn steady_intervals_cost_almost_nothing() {
        let ts: Vec<i64> = (0..1024).map(|i| 1_704_067_200_000 + i * 10_000).collect();
        let bytes = encode_ts(&ts).unwrap().len();
        assert!(bytes < 64, "{bytes} bytes for 1024 steady timestamps");
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert!(decode_values(b"not a chunk").is_err());
        assert!(decode_ts(&[0xff; 3]).is_err());
    }
}
