//! Consul's ACL system: the rules language, policies, roles, tokens, and the authorizer.

mod authorizer;
mod level;
mod parse;
mod rules;
mod token;

pub use authorizer::{
    Access, Authorizer, AuthorizerContext, DecidedBy, Decision, DefaultPolicy, Permission,
    PermissionDenied, PolicyAuthorizer, Reason, Resource, RootAuthorizer, RuleAttribute, RuleMatch,
    RuleSource, SingleMatch, Subject, UnsupportedCheck, merge_rules,
};
pub use level::{AccessLevel, Effect, Required, enforce, takes_precedence_over};
pub use parse::{MAX_RULES_LEN, Position, RulesError, parse_hcl, parse_json, parse_rules};
pub use rules::{Family, Grant, MatchKind, Rule, Rules, SingleRule};
pub use token::{
    ANONYMOUS_TOKEN_ACCESSOR_ID, ANONYMOUS_TOKEN_SECRET, AccessorId, AclObjectError,
    GLOBAL_MANAGEMENT_POLICY_ID, GLOBAL_READ_ONLY_POLICY_ID, MAX_IDENTITY_NAME_LEN,
    MAX_POLICY_NAME_LEN, MAX_ROLE_NAME_LEN, NodeIdentity, Policy, PolicyId, RESERVED_ID_PREFIX,
    Role, RoleId, SecretId, ServiceIdentity, Token, validate_policy_name, validate_role_name,
};
