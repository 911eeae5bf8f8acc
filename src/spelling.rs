//! Closed sets of values users spell by name: `--backend vulkan`, `"vae_tiling": "auto"` in a
//! jobs file, later a field of an HTTP request. Each such enum states its spellings once, as an
//! exact table ([`Spelled::SPELLINGS`]), and [`spelled!`](crate::spelled) gives it `FromStr` and
//! `Display` from that table. A command-line parser builds its possible values (with their help)
//! from the same table, so the library itself needs no argument parser.

/// An enum whose values have one spelling each.
pub trait Spelled: Copy + PartialEq + 'static {
    /// What kind of value this is, for messages (`backend`).
    const KIND: &'static str;
    /// Every value with its spelling and a one-line description, in the order help lists them.
    const SPELLINGS: &'static [(Self, &'static str, &'static str)];

    /// This value's spelling.
    fn spelling(self) -> &'static str {
        Self::SPELLINGS
            .iter()
            .find(|(v, _, _)| *v == self)
            .map_or("?", |(_, name, _)| name)
    }
}

/// A spelling no value of the set has.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown {kind} `{given}`; use one of: {expected}")]
pub struct UnknownSpelling {
    pub kind: &'static str,
    pub given: String,
    pub expected: String,
}

/// The value spelled `s` (exactly as the table spells it).
pub fn parse<T: Spelled>(s: &str) -> Result<T, UnknownSpelling> {
    T::SPELLINGS
        .iter()
        .find(|(_, name, _)| *name == s)
        .map(|(v, _, _)| *v)
        .ok_or_else(|| UnknownSpelling {
            kind: T::KIND,
            given: s.to_string(),
            expected: T::SPELLINGS
                .iter()
                .map(|(_, name, _)| *name)
                .collect::<Vec<_>>()
                .join(", "),
        })
}

/// Implements [`Spelled`], `FromStr` and `Display` for an enum from its table, one row per value:
/// `spelled! { Backend, "backend", (Backend::Auto, "auto", "The best adapter ..."), ... }`.
#[macro_export]
macro_rules! spelled {
    ($type:ty, $kind:literal, $(($value:expr, $name:literal, $help:literal)),+ $(,)?) => {
        impl $crate::spelling::Spelled for $type {
            const KIND: &'static str = $kind;
            const SPELLINGS: &'static [(Self, &'static str, &'static str)] =
                &[$(($value, $name, $help)),+];
        }

        impl std::str::FromStr for $type {
            type Err = $crate::spelling::UnknownSpelling;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                $crate::spelling::parse(s)
            }
        }

        impl std::fmt::Display for $type {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str($crate::spelling::Spelled::spelling(*self))
            }
        }
    };
}
