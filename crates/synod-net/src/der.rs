//! Just enough DER to list the DNS names in a certificate's subject
//! alternative names. Used at start-up on this node's own certificate, to
//! learn which cluster it names, and on each peer's certificate to check its
//! names (see the `tls` module) -- only after `rustls`/`webpki` verified that
//! the cluster's CA signed it, so its input is never an outsider's bytes.
//!
//! Every read is bounds-checked and returns `None` on anything unexpected, so
//! a corrupt file is an error message, never a panic.

/// One tag-length-value element: its tag and contents.
struct Tlv<'a> {
    tag: u8,
    contents: &'a [u8],
}

/// Reads the element at the front of `input`; returns it and the rest.
fn read_tlv(input: &[u8]) -> Option<(Tlv<'_>, &[u8])> {
    let (&tag, rest) = input.split_first()?;
    // Multi-byte tags (low five bits all set) never occur in what we walk.
    if tag & 0x1f == 0x1f {
        return None;
    }
    let (&first, mut rest) = rest.split_first()?;
    let len = if first < 0x80 {
        usize::from(first)
    } else {
        let count = usize::from(first & 0x7f);
        // Four length bytes describe 4 GiB, more than any certificate.
        if count == 0 || count > 4 {
            return None;
        }
        let (bytes, after) = (rest.get(..count)?, rest.get(count..)?);
        rest = after;
        bytes
            .iter()
            .fold(0usize, |len, byte| (len << 8) | usize::from(*byte))
    };
    let contents = rest.get(..len)?;
    Some((Tlv { tag, contents }, rest.get(len..)?))
}

/// The elements of a constructed value, in order; `None` if one is malformed.
fn children(mut contents: &[u8]) -> Option<Vec<Tlv<'_>>> {
    let mut out = Vec::new();
    while !contents.is_empty() {
        let (tlv, rest) = read_tlv(contents)?;
        out.push(tlv);
        contents = rest;
    }
    Some(out)
}

const SEQUENCE: u8 = 0x30;
const OCTET_STRING: u8 = 0x04;
const OID: u8 = 0x06;
/// `[3] EXPLICIT` around the extensions in a version 3 TBSCertificate.
const EXTENSIONS: u8 = 0xa3;
/// `dNSName [2] IMPLICIT IA5String` in a GeneralName.
const DNS_NAME: u8 = 0x82;
/// 2.5.29.17, subjectAltName.
const SUBJECT_ALT_NAME: [u8; 3] = [0x55, 0x1d, 0x11];

/// The DNS names in the subject alternative name extension of a DER
/// certificate; `None` if the certificate cannot be walked.
pub(crate) fn dns_names(certificate: &[u8]) -> Option<Vec<String>> {
    let (cert, _) = read_tlv(certificate)?;
    if cert.tag != SEQUENCE {
        return None;
    }
    let (tbs, _) = read_tlv(cert.contents)?;
    if tbs.tag != SEQUENCE {
        return None;
    }
    let mut names = Vec::new();
    for field in children(tbs.contents)? {
        if field.tag != EXTENSIONS {
            continue;
        }
        let (extensions, _) = read_tlv(field.contents)?;
        for extension in children(extensions.contents)? {
            let parts = children(extension.contents)?;
            let is_san = parts
                .first()
                .is_some_and(|oid| oid.tag == OID && oid.contents == SUBJECT_ALT_NAME);
            if !is_san {
                continue;
            }
            // The value is the last part (after an optional `critical` flag).
            let value = parts.last()?;
            if value.tag != OCTET_STRING {
                return None;
            }
            let (general_names, _) = read_tlv(value.contents)?;
            for name in children(general_names.contents)? {
                if name.tag == DNS_NAME {
                    names.push(String::from_utf8_lossy(name.contents).into_owned());
                }
            }
        }
    }
    Some(names)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn garbage_never_panics() {
        assert_eq!(dns_names(&[]), None);
        assert_eq!(dns_names(&[0x30]), None);
        assert_eq!(dns_names(&[0x30, 0x84, 0xff, 0xff, 0xff, 0xff]), None);
        assert_eq!(dns_names(&[0x30, 0x85, 1, 1, 1, 1, 1]), None);
        assert_eq!(dns_names(&[0x1f, 0x00]), None);
        for len in 0..64u8 {
            let junk: Vec<u8> = (0..len).map(|i| i.wrapping_mul(37) ^ 0x30).collect();
            let _ = dns_names(&junk);
        }
    }

    #[test]
    fn long_form_lengths_are_read() {
        let mut input = vec![0x04, 0x81, 0x80];
        input.extend(std::iter::repeat_n(7, 0x80));
        let (tlv, rest) = read_tlv(&input).unwrap();
        assert_eq!((tlv.tag, tlv.contents.len(), rest.len()), (0x04, 0x80, 0));
    }
}
