//! The admission webhook server. Built in the webhook issue; the policy engine it serves lives in `hubguard-policy`.
