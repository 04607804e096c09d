//! Process identities: `(days until the mother's next birthday, SU ID)`, ordered as the
//! assignment says, and the calendar arithmetic that produces the days.

use chrono::{Datelike, NaiveDate};
use std::fmt;

/// The range of days the GCD accepts (`0 < days < 366`).
pub const DAYS_RANGE: std::ops::RangeInclusive<u32> = 1..=365;
/// The range of SU IDs the GCD accepts (`1_000_000 <= su_id < 10_000_000`).
pub const SU_ID_RANGE: std::ops::RangeInclusive<u32> = 1_000_000..=9_999_999;

/// A member's identity. Ordering is the assignment's: fewer days is "less", ties go to
/// the smaller SU ID; the greatest id wins elections. The derived `Ord` compares
/// `days` first, then `su_id`, which is exactly that.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ProcessId {
    pub days: u32,
    pub su_id: u32,
}

impl ProcessId {
    pub fn new(days: u32, su_id: u32) -> Self {
        ProcessId { days, su_id }
    }

    /// Checks the id against what the GCD accepts; the error says which part is wrong.
    pub fn validate(&self) -> Result<(), IdentityError> {
        if !DAYS_RANGE.contains(&self.days) {
            return Err(IdentityError::DaysOutOfRange(self.days));
        }
        if !SU_ID_RANGE.contains(&self.su_id) {
            return Err(IdentityError::SuIdOutOfRange(self.su_id));
        }
        Ok(())
    }
}

/// Shown as Python shows the tuple, `(days, su_id)`, so it matches peers' output.
/// `[days, su_id]`, as the events write a process id.
impl serde::Serialize for ProcessId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        (self.days, self.su_id).serialize(s)
    }
}

impl fmt::Display for ProcessId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "({}, {})", self.days, self.su_id)
    }
}

/// What is wrong with an identity or a birthday, in the protocol's terms; a front end
/// adds how to fix it in its own (the binary names its flags).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdentityError {
    /// Days outside [`DAYS_RANGE`]; 366 comes from a birthday today when next year's is a
    /// leap year away.
    DaysOutOfRange(u32),
    /// An SU ID outside [`SU_ID_RANGE`].
    SuIdOutOfRange(u32),
    /// A birthday that is not `MM-DD`: the text given, and what is wrong with it.
    BadBirthday { input: String, problem: BirthdayProblem },
}

/// How a birthday's text fails to be `MM-DD`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BirthdayProblem {
    NoDash,
    /// `YYYY-MM-DD`: month and day are there, as written, after a year.
    HasYear {
        month: String,
        day: String,
    },
    MonthNotANumber,
    DayNotANumber,
    NotADate,
}

impl fmt::Display for IdentityError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IdentityError::DaysOutOfRange(366) => write!(
                f,
                "the birthday is today and next year's is 366 days away, but the GCD only accepts 1 to 365 days"
            ),
            IdentityError::DaysOutOfRange(d) => {
                write!(f, "{d} days until the birthday is outside what the GCD accepts (1 to 365)")
            }
            IdentityError::SuIdOutOfRange(id) => {
                write!(f, "SU ID {id} is outside what the GCD accepts (7 digits, 1000000 to 9999999)")
            }
            IdentityError::BadBirthday { input, problem } => {
                write!(f, "birthday {input:?} ")?;
                match problem {
                    BirthdayProblem::HasYear { month, day } => {
                        write!(f, "has a year; drop it and give month and day: {month}-{day}")
                    }
                    BirthdayProblem::NoDash => write!(f, "has no '-'; write it as MM-DD, e.g. 03-14"),
                    BirthdayProblem::MonthNotANumber => {
                        write!(f, "has a month that is not a number; write it as MM-DD, e.g. 03-14")
                    }
                    BirthdayProblem::DayNotANumber => {
                        write!(f, "has a day that is not a number; write it as MM-DD, e.g. 03-14")
                    }
                    BirthdayProblem::NotADate => write!(f, "is not a date; write it as MM-DD, e.g. 03-14"),
                }
            }
        }
    }
}

impl std::error::Error for IdentityError {}

/// A birthday as month and day, written `MM-DD`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Birthday {
    pub month: u32,
    pub day: u32,
}

impl std::str::FromStr for Birthday {
    type Err = IdentityError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = |problem| IdentityError::BadBirthday { input: s.to_owned(), problem };
        let (m, d) = s.trim().split_once('-').ok_or_else(|| bad(BirthdayProblem::NoDash))?;
        if let Some((md, dd)) = d.split_once('-').filter(|_| m.len() == 4) {
            // YYYY-MM-DD: the year means nothing here (the next birthday is counted).
            return Err(bad(BirthdayProblem::HasYear { month: md.to_owned(), day: dd.to_owned() }));
        }
        let month: u32 = m.parse().map_err(|_| bad(BirthdayProblem::MonthNotANumber))?;
        let day: u32 = d.parse().map_err(|_| bad(BirthdayProblem::DayNotANumber))?;
        // 2024 is a leap year, so this accepts 02-29 and rejects 02-30, 04-31, 13-01.
        if NaiveDate::from_ymd_opt(2024, month, day).is_none() {
            return Err(bad(BirthdayProblem::NotADate));
        }
        Ok(Birthday { month, day })
    }
}

impl Birthday {
    /// The date of the birthday in `year`. February 29 falls on February 28 in years
    /// without it: the birthday stays in its month, and the count never exceeds a year.
    fn in_year(&self, year: i32) -> NaiveDate {
        NaiveDate::from_ymd_opt(year, self.month, self.day)
            .or_else(|| NaiveDate::from_ymd_opt(year, 2, 28))
            .expect("every month-day accepted by from_str exists in some form each year")
    }

    /// Days from `today` to the next birthday strictly after it: a birthday today
    /// counts as next year's (the GCD refuses 0), so the result is 1 to 366.
    pub fn days_until_next(&self, today: NaiveDate) -> u32 {
        let this_year = self.in_year(today.year());
        let next = if this_year > today { this_year } else { self.in_year(today.year() + 1) };
        (next - today).num_days() as u32
    }
}

/// Today's date in the local time zone, where the person running the node lives.
pub fn local_today() -> NaiveDate {
    chrono::Local::now().date_naive()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn date(y: i32, m: u32, d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, d).unwrap()
    }

    #[test]
    fn ordering_is_days_then_su_id() {
        let a = ProcessId::new(10, 5_000_000);
        let b = ProcessId::new(11, 1_000_000);
        let c = ProcessId::new(10, 5_000_001);
        assert!(a < b && a < c && c < b);
        assert_eq!([a, b, c].iter().max(), Some(&b));
    }

    #[test]
    fn days_until_next_birthday() {
        let bd: Birthday = "03-14".parse().unwrap();
        assert_eq!(bd.days_until_next(date(2026, 3, 13)), 1);
        assert_eq!(bd.days_until_next(date(2026, 3, 15)), 364);
        // Today is the birthday: next year's, across a year with no Feb 29 ...
        assert_eq!(bd.days_until_next(date(2026, 3, 14)), 365);
        // ... and across one with it.
        assert_eq!(bd.days_until_next(date(2027, 3, 14)), 366);
        let new_year: Birthday = "01-01".parse().unwrap();
        assert_eq!(new_year.days_until_next(date(2026, 12, 31)), 1);
    }

    #[test]
    fn leap_day_birthdays_fall_on_feb_28_in_common_years() {
        let bd: Birthday = "02-29".parse().unwrap();
        assert_eq!(bd.days_until_next(date(2026, 2, 27)), 1);
        assert_eq!(bd.days_until_next(date(2028, 2, 27)), 2);
        // On Feb 28 of a common year the birthday is today, so next year's counts.
        assert_eq!(bd.days_until_next(date(2026, 2, 28)), 365);
    }

    #[test]
    fn bad_birthdays_and_ids_say_what_is_wrong() {
        for s in ["13-01", "02-30", "0314", "ab-cd", "03-xx", ""] {
            let err = s.parse::<Birthday>().unwrap_err().to_string();
            assert!(err.contains("MM-DD") && err.contains(&format!("{s:?}")), "{s}: {err}");
        }
        let err = "2025-03-14".parse::<Birthday>().unwrap_err();
        let problem = BirthdayProblem::HasYear { month: "03".into(), day: "14".into() };
        assert_eq!(err, IdentityError::BadBirthday { input: "2025-03-14".into(), problem });
        assert!(err.to_string().contains("has a year; drop it and give month and day: 03-14"), "{err}");
        let err = ProcessId::new(0, 1_234_567).validate().unwrap_err();
        assert_eq!(err, IdentityError::DaysOutOfRange(0));
        assert!(
            err.to_string().starts_with("0 days until the birthday is outside") && err.to_string().contains("1 to 365")
        );
        let err = ProcessId::new(366, 1_234_567).validate().unwrap_err().to_string();
        assert!(err.contains("366 days away") && err.contains("1 to 365"), "{err}");
        let err = ProcessId::new(5, 999_999).validate().unwrap_err();
        assert_eq!(err, IdentityError::SuIdOutOfRange(999_999));
        assert!(err.to_string().contains("SU ID 999999 is outside") && err.to_string().contains("1000000 to 9999999"));
        assert_eq!(ProcessId::new(5, 10_000_000).validate(), Err(IdentityError::SuIdOutOfRange(10_000_000)));
        assert!(ProcessId::new(365, 9_999_999).validate().is_ok());
        assert!(ProcessId::new(1, 1_000_000).validate().is_ok());
    }

    #[test]
    fn errors_name_no_command_line_flag() {
        let errors = [
            ProcessId::new(0, 1_234_567).validate().unwrap_err(),
            ProcessId::new(366, 1_234_567).validate().unwrap_err(),
            ProcessId::new(5, 999_999).validate().unwrap_err(),
            "2025-03-14".parse::<Birthday>().unwrap_err(),
            "0314".parse::<Birthday>().unwrap_err(),
        ];
        for err in errors {
            assert!(!err.to_string().contains("--"), "{err}");
        }
    }
}
