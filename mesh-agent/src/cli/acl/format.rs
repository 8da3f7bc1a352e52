//! The ACL objects as the commands read them, and Consul's "pretty" layouts of them
//! (`command/acl/*/formatter.go`).

use serde::Deserialize;

/// A policy, or a policy list stub (no rules).
#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub(crate) struct Policy {
    #[serde(rename = "ID")]
    pub(crate) id: String,
    pub(crate) name: String,
    pub(crate) description: String,
    pub(crate) rules: String,
    pub(crate) datacenters: Option<Vec<String>>,
}

/// A policy or role link.
#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub(crate) struct Link {
    #[serde(rename = "ID")]
    pub(crate) id: String,
    pub(crate) name: String,
}

/// A service identity.
#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub(crate) struct ServiceIdentity {
    pub(crate) service_name: String,
    pub(crate) datacenters: Option<Vec<String>>,
}

/// A node identity.
#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub(crate) struct NodeIdentity {
    pub(crate) node_name: String,
    pub(crate) datacenter: String,
}

/// A token, or a token list stub.
#[derive(Default, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub(crate) struct Token {
    #[serde(rename = "AccessorID")]
    pub(crate) accessor_id: String,
    #[serde(rename = "SecretID")]
    pub(crate) secret_id: String,
    pub(crate) description: String,
    pub(crate) policies: Option<Vec<Link>>,
    pub(crate) roles: Option<Vec<Link>>,
    pub(crate) service_identities: Option<Vec<ServiceIdentity>>,
    pub(crate) node_identities: Option<Vec<NodeIdentity>>,
    pub(crate) local: bool,
    pub(crate) auth_method: String,
    pub(crate) expiration_time: Option<String>,
    pub(crate) create_time: String,
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Token")
            .field("accessor_id", &self.accessor_id)
            .field("secret_id", &"<redacted>")
            .field("description", &self.description)
            .finish_non_exhaustive()
    }
}

/// A role.
#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub(crate) struct Role {
    #[serde(rename = "ID")]
    pub(crate) id: String,
    pub(crate) name: String,
    pub(crate) description: String,
    pub(crate) policies: Option<Vec<Link>>,
    pub(crate) service_identities: Option<Vec<ServiceIdentity>>,
    pub(crate) node_identities: Option<Vec<NodeIdentity>>,
}

/// `consul acl policy read`'s layout.
pub(crate) fn policy(p: &Policy) -> String {
    format!(
        "ID:           {}\nName:         {}\nDescription:  {}\nDatacenters:  {}\nRules:\n{}",
        p.id,
        p.name,
        p.description,
        p.datacenters.as_deref().unwrap_or_default().join(", "),
        p.rules
    )
}

/// `consul acl policy list`'s layout.
pub(crate) fn policy_list(policies: &[Policy]) -> String {
    let mut out = String::new();
    for p in policies {
        out.push_str(&format!(
            "{}:\n   ID:           {}\n   Description:  {}\n   Datacenters:  {}\n",
            p.name,
            p.id,
            p.description,
            p.datacenters.as_deref().unwrap_or_default().join(", ")
        ));
    }
    out
}

/// `consul acl token read`'s layout.
pub(crate) fn token(t: &Token) -> String {
    let mut out = format!(
        "AccessorID:       {}\nSecretID:         {}\nDescription:      {}\nLocal:            {}\n",
        t.accessor_id, t.secret_id, t.description, t.local
    );
    if !t.auth_method.is_empty() {
        out.push_str(&format!("Auth Method:      {}\n", t.auth_method));
    }
    out.push_str(&format!("Create Time:      {}\n", t.create_time));
    if let Some(exp) = t.expiration_time.as_deref().filter(|e| !e.is_empty()) {
        out.push_str(&format!("Expiration Time:  {exp}\n"));
    }
    links_section(&mut out, "Policies", t.policies.as_deref(), "");
    links_section(&mut out, "Roles", t.roles.as_deref(), "");
    identities_section(
        &mut out,
        t.service_identities.as_deref(),
        t.node_identities.as_deref(),
        "",
    );
    out
}

/// `consul acl token list`'s layout: tokens separated by a blank line.
pub(crate) fn token_list(tokens: &[Token]) -> String {
    tokens.iter().map(token).collect::<Vec<_>>().join("\n")
}

/// `consul acl role read`'s layout.
pub(crate) fn role(r: &Role) -> String {
    let mut out = format!(
        "ID:           {}\nName:         {}\nDescription:  {}\n",
        r.id, r.name, r.description
    );
    links_section(&mut out, "Policies", r.policies.as_deref(), "");
    identities_section(
        &mut out,
        r.service_identities.as_deref(),
        r.node_identities.as_deref(),
        "",
    );
    out
}

/// `consul acl role list`'s layout.
pub(crate) fn role_list(roles: &[Role]) -> String {
    let mut out = String::new();
    for r in roles {
        out.push_str(&format!(
            "{}:\n   ID:           {}\n   Description:  {}\n",
            r.name, r.id, r.description
        ));
        links_section(&mut out, "   Policies", r.policies.as_deref(), "   ");
        identities_section(
            &mut out,
            r.service_identities.as_deref(),
            r.node_identities.as_deref(),
            "   ",
        );
    }
    out
}

fn links_section(out: &mut String, title: &str, links: Option<&[Link]>, indent: &str) {
    let Some(links) = links.filter(|l| !l.is_empty()) else {
        return;
    };
    out.push_str(&format!("{title}:\n"));
    for l in links {
        out.push_str(&format!("{indent}   {} - {}\n", l.id, l.name));
    }
}

fn identities_section(
    out: &mut String,
    services: Option<&[ServiceIdentity]>,
    nodes: Option<&[NodeIdentity]>,
    indent: &str,
) {
    if let Some(services) = services.filter(|s| !s.is_empty()) {
        out.push_str(&format!("{indent}Service Identities:\n"));
        for s in services {
            let dcs = match s.datacenters.as_deref() {
                Some(d) if !d.is_empty() => d.join(", "),
                _ => "all".to_owned(),
            };
            out.push_str(&format!(
                "{indent}   {} (Datacenters: {dcs})\n",
                s.service_name
            ));
        }
    }
    if let Some(nodes) = nodes.filter(|n| !n.is_empty()) {
        out.push_str(&format!("{indent}Node Identities:\n"));
        for n in nodes {
            out.push_str(&format!(
                "{indent}   {} (Datacenter: {})\n",
                n.node_name, n.datacenter
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode<T: serde::de::DeserializeOwned>(v: serde_json::Value) -> T {
        serde_json::from_value(v).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn a_policy_as_consul_prints_it() {
        let p: Policy = decode(serde_json::json!({
            "ID": "e359bd81-baca-903e-7e64-1ccd9fdc78f5", "Name": "mesh-gateway",
            "Description": "", "Rules": "{\"service\": {}}", "Datacenters": null,
            "Hash": "abc=", "CreateIndex": 7, "ModifyIndex": 7
        }));
        assert_eq!(
            policy(&p),
            "ID:           e359bd81-baca-903e-7e64-1ccd9fdc78f5\nName:         mesh-gateway\n\
             Description:  \nDatacenters:  \nRules:\n{\"service\": {}}"
        );
    }

    #[test]
    fn a_policy_list_as_consul_prints_it() {
        let ps: Vec<Policy> = decode(serde_json::json!([
            {"ID": "00000000-0000-0000-0000-000000000001", "Name": "global-management",
             "Description": "Builtin Policy that grants unlimited access", "Datacenters": null},
            {"ID": "a", "Name": "x", "Description": "", "Datacenters": ["dc1", "dc2"]}
        ]));
        assert_eq!(
            policy_list(&ps),
            "global-management:\n   ID:           00000000-0000-0000-0000-000000000001\n   \
             Description:  Builtin Policy that grants unlimited access\n   Datacenters:  \n\
             x:\n   ID:           a\n   Description:  \n   Datacenters:  dc1, dc2\n"
        );
    }

    #[test]
    fn a_token_as_consul_prints_it() {
        let t: Token = decode(serde_json::json!({
            "AccessorID": "6a1253d2-1785-24fd-91c2-f8e78c745511",
            "SecretID": "45a3bd52-07c7-47a4-52fd-0745e0cfe967",
            "Description": "mesh-gateway primary datacenter token",
            "Policies": [{"ID": "165d4317-e379-f732-ce70-86278c4558f7", "Name": "mesh-gateway"}],
            "ServiceIdentities": [{"ServiceName": "web"}, {"ServiceName": "db", "Datacenters": ["dc1"]}],
            "Local": false, "CreateTime": "2019-04-25T16:11:23.130717-04:00",
            "Hash": "UuiRkOQPRCvoRZHRtUxxbrmwZ5crYrOdZ0Z1FTFbTbA=", "CreateIndex": 59, "ModifyIndex": 59
        }));
        assert_eq!(
            token(&t),
            "AccessorID:       6a1253d2-1785-24fd-91c2-f8e78c745511\n\
             SecretID:         45a3bd52-07c7-47a4-52fd-0745e0cfe967\n\
             Description:      mesh-gateway primary datacenter token\n\
             Local:            false\n\
             Create Time:      2019-04-25T16:11:23.130717-04:00\n\
             Policies:\n   165d4317-e379-f732-ce70-86278c4558f7 - mesh-gateway\n\
             Service Identities:\n   web (Datacenters: all)\n   db (Datacenters: dc1)\n"
        );
        assert!(!format!("{t:?}").contains("45a3bd52"));
    }

    #[test]
    fn a_role_and_a_role_list() {
        let r: Role = decode(serde_json::json!({
            "ID": "r1", "Name": "gateways", "Description": "d",
            "Policies": [{"ID": "p1", "Name": "mesh-gateway"}],
            "NodeIdentities": [{"NodeName": "n1", "Datacenter": "dc1"}]
        }));
        assert_eq!(
            role(&r),
            "ID:           r1\nName:         gateways\nDescription:  d\nPolicies:\n   p1 - mesh-gateway\n\
             Node Identities:\n   n1 (Datacenter: dc1)\n"
        );
        assert_eq!(
            role_list(&[r]),
            "gateways:\n   ID:           r1\n   Description:  d\n   Policies:\n      p1 - mesh-gateway\n   \
             Node Identities:\n      n1 (Datacenter: dc1)\n"
        );
    }
}
