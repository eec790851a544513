//! `DELETE_OUTPUT_RESOURCES` / `"deleteOutputResources"`: which output resources to delete.

/// `DELETE_OUTPUT_RESOURCES` / `"deleteOutputResources"`: which output resources to delete.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Mode {
    /// Only the Image Builder image (DeleteImage), as without this feature.
    #[default]
    None,
    /// The image's AMIs and their snapshots.
    Amis,
    /// The image's ECR container images.
    Containers,
    /// Both.
    All,
}

impl Mode {
    /// What a setting accepts, for error messages.
    pub const ACCEPTED: &'static str = "none, amis, containers or all (case-insensitive)";

    /// Parses a setting value (trimmed, case-insensitive). `Err` holds [`Mode::ACCEPTED`].
    pub fn parse(value: &str) -> Result<Mode, &'static str> {
        match value.trim().to_ascii_lowercase().as_str() {
            "none" => Ok(Mode::None),
            "amis" => Ok(Mode::Amis),
            "containers" => Ok(Mode::Containers),
            "all" => Ok(Mode::All),
            _ => Err(Mode::ACCEPTED),
        }
    }

    /// The setting's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::None => "none",
            Mode::Amis => "amis",
            Mode::Containers => "containers",
            Mode::All => "all",
        }
    }

    /// Whether AMIs (and their snapshots) are deleted.
    pub fn amis(self) -> bool {
        matches!(self, Mode::Amis | Mode::All)
    }

    /// Whether ECR container images are deleted.
    pub fn containers(self) -> bool {
        matches!(self, Mode::Containers | Mode::All)
    }

    /// Whether anything besides the image itself is deleted (so GetImage must run).
    pub fn any(self) -> bool {
        self != Mode::None
    }

    /// What both modes delete: when two requests for one image differ, nothing is deleted
    /// that one of them asked to keep.
    pub fn narrowest(self, other: Mode) -> Mode {
        match (
            self.amis() && other.amis(),
            self.containers() && other.containers(),
        ) {
            (true, true) => Mode::All,
            (true, false) => Mode::Amis,
            (false, true) => Mode::Containers,
            (false, false) => Mode::None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mode_accepts_the_four_values_case_insensitively() {
        for (v, m) in [
            ("none", Mode::None),
            ("AMIS", Mode::Amis),
            (" containers ", Mode::Containers),
            ("All", Mode::All),
        ] {
            assert_eq!(Mode::parse(v), Ok(m));
        }
        assert_eq!(Mode::parse("everything"), Err(Mode::ACCEPTED));
        assert_eq!(Mode::parse(""), Err(Mode::ACCEPTED));
        assert!(Mode::All.amis() && Mode::All.containers());
        assert!(Mode::Amis.amis() && !Mode::Amis.containers());
        assert!(!Mode::None.any());
    }
}
