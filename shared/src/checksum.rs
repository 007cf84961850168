//! Full-object checksums (CRC64NVME, CRC32C) as S3 stores them.
//!
//! Each part's CRC is computed once, where the part is uploaded, and the parts' CRCs are
//! combined in order into the whole object's CRC, so the full-object checksum costs one pass
//! over the data, spread over the upload tasks. S3 checks the value at CompleteMultipartUpload
//! (checksum type `FULL_OBJECT`) and returns it on GET/HEAD.

use base64::Engine as _;
use crc_fast::CrcAlgorithm;

/// A full-object checksum algorithm S3 supports for multipart uploads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub enum ChecksumAlgorithm {
    /// CRC-64/NVME, S3's default and the fastest.
    #[default]
    #[serde(rename = "CRC64NVME")]
    Crc64Nvme,
    /// CRC-32C (Castagnoli).
    #[serde(rename = "CRC32C")]
    Crc32c,
}

impl ChecksumAlgorithm {
    fn crc(self) -> CrcAlgorithm {
        match self {
            ChecksumAlgorithm::Crc64Nvme => CrcAlgorithm::Crc64Nvme,
            ChecksumAlgorithm::Crc32c => CrcAlgorithm::Crc32Iscsi,
        }
    }

    /// The SDK's name for the algorithm.
    pub fn sdk(self) -> aws_sdk_s3::types::ChecksumAlgorithm {
        match self {
            ChecksumAlgorithm::Crc64Nvme => aws_sdk_s3::types::ChecksumAlgorithm::Crc64Nvme,
            ChecksumAlgorithm::Crc32c => aws_sdk_s3::types::ChecksumAlgorithm::Crc32C,
        }
    }

    /// The name as S3 spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            ChecksumAlgorithm::Crc64Nvme => "CRC64NVME",
            ChecksumAlgorithm::Crc32c => "CRC32C",
        }
    }

    /// CRC of one buffer.
    pub fn checksum(self, data: &[u8]) -> u64 {
        crc_fast::checksum(self.crc(), data)
    }

    /// The CRC of `a ++ b` from the CRCs of `a` and `b` and the length of `b`.
    pub fn combine(self, crc_a: u64, crc_b: u64, len_b: u64) -> u64 {
        crc_fast::checksum_combine(self.crc(), crc_a, crc_b, len_b)
    }

    /// The CRC of no bytes.
    pub fn empty(self) -> u64 {
        self.checksum(&[])
    }

    /// The value as S3 transmits it: big-endian bytes, base64.
    pub fn encode(self, crc: u64) -> String {
        let engine = base64::engine::general_purpose::STANDARD;
        match self {
            ChecksumAlgorithm::Crc64Nvme => engine.encode(crc.to_be_bytes()),
            ChecksumAlgorithm::Crc32c => engine.encode((crc as u32).to_be_bytes()),
        }
    }
}

impl std::str::FromStr for ChecksumAlgorithm {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_uppercase().replace(['-', '_'], "").as_str() {
            "CRC64NVME" => Ok(ChecksumAlgorithm::Crc64Nvme),
            "CRC32C" => Ok(ChecksumAlgorithm::Crc32c),
            other => Err(format!("unknown checksum algorithm {other:?}")),
        }
    }
}

/// A full-object checksum as reported back to callers.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FullObjectChecksum {
    /// `CRC64NVME` or `CRC32C`.
    pub algorithm: String,
    /// Base64 of the big-endian CRC, exactly as S3 shows it.
    pub value: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_check_values() {
        // The standard "123456789" check values of both CRCs.
        assert_eq!(
            ChecksumAlgorithm::Crc32c.checksum(b"123456789"),
            0xE306_9283
        );
        assert_eq!(
            ChecksumAlgorithm::Crc64Nvme.checksum(b"123456789"),
            0xAE8B_1486_0A79_9888
        );
    }

    #[test]
    fn combining_parts_equals_the_whole() {
        let data: Vec<u8> = (0..100_000u32).map(|i| (i * 31 % 251) as u8).collect();
        for alg in [ChecksumAlgorithm::Crc64Nvme, ChecksumAlgorithm::Crc32c] {
            let whole = alg.checksum(&data);
            let mut acc = alg.empty();
            for chunk in data.chunks(7_777) {
                acc = alg.combine(acc, alg.checksum(chunk), chunk.len() as u64);
            }
            assert_eq!(acc, whole, "{alg:?}");
        }
    }

    #[test]
    fn encoding_is_big_endian_base64_of_the_right_width() {
        assert_eq!(ChecksumAlgorithm::Crc32c.encode(0xE306_9283), "4waSgw==");
        assert_eq!(ChecksumAlgorithm::Crc64Nvme.encode(0).len(), 12);
        assert_eq!("crc64-nvme".parse(), Ok(ChecksumAlgorithm::Crc64Nvme));
        assert!("md5".parse::<ChecksumAlgorithm>().is_err());
    }
}
