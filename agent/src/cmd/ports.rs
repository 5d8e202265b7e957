//! Port lists as users type them: `8080-8099,9000`.
use std::collections::BTreeSet;

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum PortListError {
    #[error("`{0}` is not a port (1-65535) or range like 8080-8099")]
    Invalid(String),
    #[error("range `{0}` is backwards")]
    Backwards(String),
}

pub fn parse_port_list(text: &str) -> Result<BTreeSet<u16>, PortListError> {
    let mut ports = BTreeSet::new();
    for item in text.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let port = |s: &str| match s.trim().parse::<u16>() {
            Ok(p) if p > 0 => Ok(p),
            _ => Err(PortListError::Invalid(item.to_owned())),
        };
        match item.split_once('-') {
            Some((lo, hi)) => {
                let (lo, hi) = (port(lo)?, port(hi)?);
                if lo > hi {
                    return Err(PortListError::Backwards(item.to_owned()));
                }
                ports.extend(lo..=hi);
            }
            None => {
                ports.insert(port(item)?);
            }
        }
    }
    if ports.is_empty() {
        return Err(PortListError::Invalid(text.to_owned()));
    }
    Ok(ports)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_ranges_and_singles() {
        let p = parse_port_list("8080-8082, 9000").unwrap();
        assert_eq!(
            p.into_iter().collect::<Vec<_>>(),
            vec![8080, 8081, 8082, 9000]
        );
    }

    #[test]
    fn rejects_bad_input() {
        assert!(matches!(
            parse_port_list("80a"),
            Err(PortListError::Invalid(_))
        ));
        assert!(matches!(
            parse_port_list("0"),
            Err(PortListError::Invalid(_))
        ));
        assert!(matches!(
            parse_port_list("70000"),
            Err(PortListError::Invalid(_))
        ));
        assert!(matches!(
            parse_port_list("9-1"),
            Err(PortListError::Backwards(_))
        ));
        assert!(parse_port_list("").is_err());
    }
}
