//! FINANCIAL_ADVICE: a text-level classifier. (Being written.)

use crate::rules::RuleError;

#[derive(Debug)]
pub struct AdviceClassifier {}

impl AdviceClassifier {
    pub fn builtin() -> Result<AdviceClassifier, RuleError> {
        Ok(AdviceClassifier {})
    }

    pub fn is_advice(&self, _text: &str) -> bool {
        false
    }
}
