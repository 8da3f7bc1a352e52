use super::*;
use crate::mesh_gateway::MeshGatewayMode;

/// The guide's `socat.json`, byte for byte.
const SOCAT_JSON: &str = r#"{
"service": {
"name": "socat",
"port": 8181,
"token": "<token here>",
"connect": {"sidecar_service": {} }
}
}"#;

/// The guide's `web.json`, byte for byte.
const WEB_JSON: &str = r#"{
"service": {
"name": "web",
"port": 8080,
"token": "<token here>",
"connect": {
"sidecar_service": {
"proxy": {
"upstreams": [{
"destination_name": "socat",
"datacenter": "primary",
"local_bind_port": 8181
}]
}
}
}
}
}"#;

fn node() -> NodeAddresses {
    NodeAddresses {
        address: Host::parse("10.0.0.9").unwrap(),
        wan: Some(Host::parse("203.0.113.9").unwrap()),
    }
}

#[test]
fn guide_files_load_unchanged() {
    let socat = ServiceDefinition::from_json(SOCAT_JSON).unwrap();
    assert_eq!(socat.name.as_ref().unwrap().as_str(), "socat");
    assert_eq!(socat.port, 8181);
    assert_eq!(
        socat.token.as_ref().unwrap().expose_secret(),
        "<token here>"
    );
    assert_eq!(socat.sidecar_service(), Some(&ServiceDefinition::default()));
    socat.validate().unwrap();

    let web = ServiceDefinition::from_json(WEB_JSON).unwrap();
    web.validate().unwrap();
    let up = &web
        .sidecar_service()
        .unwrap()
        .proxy
        .as_ref()
        .unwrap()
        .upstreams[0];
    assert_eq!(up.destination_name.as_ref().unwrap().as_str(), "socat");
    assert_eq!(up.datacenter.as_ref().unwrap().as_str(), "primary");
    assert_eq!(up.listener().to_string(), "127.0.0.1:8181");
    assert_eq!(up.destination_type, DestinationType::Service);
    assert_eq!(up.mesh_gateway.mode, MeshGatewayMode::Default);
}

#[test]
fn wrapper_and_bare_forms_agree_and_round_trip() {
    let web = ServiceDefinition::from_json(WEB_JSON).unwrap();
    let bare = web.to_json();
    assert!(bare.starts_with(r#"{"Name":"web""#), "{bare}");
    assert_eq!(ServiceDefinition::from_json(&bare).unwrap(), web);
    let wrapped = format!(r#"{{"Service":{bare}}}"#);
    assert_eq!(ServiceDefinition::from_json(&wrapped).unwrap(), web);
}

#[test]
fn token_is_redacted_in_debug() {
    let socat = ServiceDefinition::from_json(SOCAT_JSON).unwrap();
    let dbg = format!("{socat:?}");
    assert!(!dbg.contains("<token here>"), "{dbg}");
    assert!(dbg.contains("TokenSecret(<redacted>)"));
    let sidecar = sidecar_from_service(&socat, socat.token.as_ref())
        .unwrap()
        .unwrap();
    assert!(!format!("{sidecar:?}").contains("<token here>"));
}

#[test]
fn malformed_input_is_a_json_error() {
    for bad in [
        "",
        r#"{"name":"Web"}"#,
        r#"{"name":"web","upstream":[]}"#,
        r#"{"name":"web","port":-1}"#,
        r#"{"name":"web","kind":"ingress-gateway"}"#,
        r#"{"name":"web","address":"not an address"}"#,
        r#"{"name":"web","Name":"web"}"#,
        r#"{"service":{"name":"web"},"extra":1}"#,
    ] {
        assert!(
            matches!(
                ServiceDefinition::from_json(bad),
                Err(RegistrationError::Json(_))
            ),
            "{bad}"
        );
    }
}

#[test]
fn non_objects_are_refused() {
    for bad in ["[]", "1", "null", "\"web\""] {
        assert!(matches!(
            ServiceDefinition::from_json(bad),
            Err(RegistrationError::NotAnObject)
        ));
    }
}

#[test]
fn validation_rules() {
    let v = |s: &str| ServiceDefinition::from_json(s).unwrap().validate();
    assert!(matches!(
        v(r#"{"port":1}"#),
        Err(RegistrationError::MissingName)
    ));
    assert!(matches!(
        v(r#"{"name":"web","meta":{"consul-x":"1"}}"#),
        Err(RegistrationError::Meta(MetaError::Reserved(_)))
    ));
    assert!(matches!(
        v(r#"{"name":"web","proxy":{}}"#),
        Err(RegistrationError::ProxyOnTypical)
    ));
    assert!(matches!(
        v(r#"{"name":"web","connect":{"native":true}}"#),
        Err(RegistrationError::NativeWithoutPort)
    ));
    assert!(matches!(
        v(r#"{"name":"p","kind":"connect-proxy","port":1}"#),
        Err(RegistrationError::ProxyDestinationMissing)
    ));
    assert!(matches!(
        v(r#"{"name":"web","connect":{"sidecar_service":{"id":"x"}}}"#),
        Err(RegistrationError::SidecarId)
    ));
    assert!(matches!(
        v(r#"{"name":"web","connect":{"sidecar_service":{"connect":{"sidecar_service":{}}}}}"#),
        Err(RegistrationError::NestedSidecar)
    ));
    assert!(matches!(
        v(r#"{"name":"web","weights":{"passing":0,"warning":1}}"#),
        Err(RegistrationError::WeightsPassing)
    ));
    let dup = r#"{"name":"web","connect":{"sidecar_service":{"proxy":{"upstreams":[
        {"destination_name":"db","local_bind_port":1},{"destination_name":"db","local_bind_port":2}]}}}}"#;
    let err = v(dup).unwrap_err();
    let RegistrationError::Sidecar(inner) = &err else {
        panic!("{err:?}")
    };
    assert!(
        inner
            .to_string()
            .starts_with("upstreams cannot contain duplicates of"),
        "{inner}"
    );
    let same_port = r#"{"name":"p","kind":"connect-proxy","proxy":{"destination_service_name":"web",
        "upstreams":[{"destination_name":"db","local_bind_port":1},{"destination_name":"x","local_bind_port":1}]}}"#;
    assert_eq!(
        v(same_port).unwrap_err().to_string(),
        "upstreams cannot contain duplicates by local bind address and port or unix path; \"127.0.0.1:1\" is specified twice"
    );
    let cross = r#"{"name":"p","kind":"connect-proxy","proxy":{"destination_service_name":"web",
        "upstreams":[{"destination_name":"db","destination_partition":"p1","datacenter":"dc2","local_bind_port":1}]}}"#;
    assert!(matches!(
        v(cross),
        Err(RegistrationError::UpstreamCrossDatacenterPartition { index: 0 })
    ));
}

#[test]
fn gateway_rules() {
    let v = |s: &str| ServiceDefinition::from_json(s).unwrap().validate();
    let err = v(r#"{"name":"mesh-gateway","kind":"mesh-gateway"}"#).unwrap_err();
    assert_eq!(err.to_string(), "Port must be non-zero for a mesh-gateway");
    let err =
        v(r#"{"name":"gw","kind":"mesh-gateway","port":8443,"connect":{"sidecar_service":{}}}"#)
            .unwrap_err();
    assert_eq!(
        err.to_string(),
        "A mesh-gateway cannot have a sidecar service defined"
    );
    for (field, json) in [
        (
            "DestinationServiceName",
            r#"{"destination_service_name":"web"}"#,
        ),
        (
            "DestinationServiceID",
            r#"{"destination_service_id":"web1"}"#,
        ),
        (
            "LocalServiceAddress",
            r#"{"local_service_address":"127.0.0.1"}"#,
        ),
        ("LocalServicePort", r#"{"local_service_port":80}"#),
        (
            "LocalServiceSocketPath",
            r#"{"local_service_socket_path":"/s"}"#,
        ),
        (
            "Upstreams",
            r#"{"upstreams":[{"destination_name":"db","local_bind_port":1}]}"#,
        ),
    ] {
        let reg = format!(r#"{{"name":"gw","kind":"mesh-gateway","port":8443,"proxy":{json}}}"#);
        let err = v(&reg).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("The Proxy.{field} configuration is invalid for a mesh-gateway")
        );
    }
    // Gateways may carry reserved meta and proxy config.
    v(
        r#"{"name":"gw","kind":"mesh-gateway","port":8443,"meta":{"consul-wan-federation":"1"},
        "proxy":{"config":{"envoy_gateway_no_default_bind":true}}}"#,
    )
    .unwrap();
}

#[test]
fn mesh_gateway_registration_defaults() {
    let gw = MeshGatewayRegistration::new(None, None, None).unwrap();
    assert_eq!(gw.name().as_str(), DEFAULT_MESH_GATEWAY_NAME);
    assert_eq!(gw.port(), DEFAULT_MESH_GATEWAY_PORT);
    assert_eq!(gw.address(), None);
    assert_eq!(gw.lan_address(&node()).to_string(), "10.0.0.9:8443");
    assert_eq!(gw.wan_address(&node()).to_string(), "203.0.113.9:8443");
    assert_eq!(gw.default_check().tcp.as_deref(), Some("127.0.0.1:8443"));
    assert!(!gw.wan_federation());
    assert!(gw.clone().with_wan_federation().wan_federation());

    let lan = HostPort::parse_with_default("10.1.0.5", DEFAULT_MESH_GATEWAY_PORT).unwrap();
    let wan =
        HostPort::parse_with_default("gw.example.com:443", DEFAULT_MESH_GATEWAY_PORT).unwrap();
    let gw = MeshGatewayRegistration::new(
        Some("gateway-primary".parse().unwrap()),
        Some(lan),
        Some(wan),
    )
    .unwrap();
    assert_eq!(gw.lan_address(&node()).to_string(), "10.1.0.5:8443");
    assert_eq!(gw.wan_address(&node()).to_string(), "gw.example.com:443");
    assert_eq!(gw.tagged_lan().unwrap().port, 8443);
    assert_eq!(
        gw.default_check().name.as_deref(),
        Some("mesh-gateway listening")
    );
    let json = gw.definition().to_json();
    let back =
        MeshGatewayRegistration::from_definition(ServiceDefinition::from_json(&json).unwrap())
            .unwrap();
    assert_eq!(back, gw);
    assert!(matches!(
        MeshGatewayRegistration::from_definition(ServiceDefinition::default()),
        Err(RegistrationError::NotAMeshGateway(ServiceKind::Typical))
    ));
}

#[test]
fn wan_address_falls_back() {
    let gw = |json: &str| {
        MeshGatewayRegistration::from_definition(ServiceDefinition::from_json(json).unwrap())
            .unwrap()
    };
    // wan tagged address without a port: the service port.
    let g = gw(r#"{"kind":"mesh-gateway","port":8443,"address":"10.0.0.1",
        "tagged_addresses":{"wan":{"address":"198.51.100.1"}}}"#);
    assert_eq!(g.wan_address(&node()).to_string(), "198.51.100.1:8443");
    // no wan tagged address: the service address.
    let g = gw(r#"{"kind":"mesh-gateway","port":8443,"address":"10.0.0.1"}"#);
    assert_eq!(g.wan_address(&node()).to_string(), "10.0.0.1:8443");
    // nothing on the service: node WAN, then node LAN.
    let g = gw(r#"{"kind":"mesh-gateway","port":8443}"#);
    assert_eq!(g.wan_address(&node()).to_string(), "203.0.113.9:8443");
    let lan_only = NodeAddresses {
        address: Host::parse("10.0.0.9").unwrap(),
        wan: None,
    };
    assert_eq!(g.wan_address(&lan_only).to_string(), "10.0.0.9:8443");
    assert_eq!(
        g.definition().name.as_ref().unwrap().as_str(),
        "mesh-gateway"
    );
}

#[test]
fn service_instance_id_rules() {
    assert!(ServiceInstanceId::new("web-1:8080").is_ok());
    for bad in ["", "a b", "a/b", "é"] {
        assert!(ServiceInstanceId::new(bad).is_err(), "{bad:?}");
    }
    assert!(ServiceInstanceId::new("a".repeat(MAX_SERVICE_ID_LEN + 1)).is_err());
}

#[test]
fn sidecar_port_range_rules() {
    assert!(SidecarPortRange::new(10, 9).is_err());
    assert!(SidecarPortRange::new(0, 9).is_err());
    let id = ServiceInstanceId::new("web-sidecar-proxy").unwrap();
    assert_eq!(
        SidecarPortRange::disabled()
            .allocate(&id, [])
            .unwrap_err()
            .to_string(),
        "no port provided for sidecar_service and auto-assignment disabled in config"
    );
    let r = SidecarPortRange::new(5000, 5001).unwrap();
    assert_eq!(
        r.allocate(&id, [("a", 5000), ("b", 5001)])
            .unwrap_err()
            .to_string(),
        "no port provided for sidecar_service and none left in the configured range [5000, 5001]"
    );
    let d = SidecarPortRange::default();
    assert_eq!((d.min(), d.max()), (21000, 21255));
    assert_eq!(d.allocate(&id, []).unwrap(), 21000);
}

#[test]
fn sidecar_socket_parent_and_assigned_port() {
    let parent = ServiceDefinition::from_json(
        r#"{"name":"web","socket_path":"/run/web.sock","connect":{"sidecar_service":{}}}"#,
    )
    .unwrap();
    let mut sc = sidecar_from_service(&parent, None).unwrap().unwrap();
    let proxy = sc.service().proxy.clone().unwrap();
    assert_eq!(
        proxy.local_service_socket_path.as_deref(),
        Some("/run/web.sock")
    );
    assert_eq!(proxy.local_service_address, None);
    assert_eq!(sc.id().as_str(), "web-sidecar-proxy");
    assert_eq!(
        sc.assign_port(&SidecarPortRange::default(), [("web", 21000)])
            .unwrap(),
        21001
    );
    sc.ensure_default_checks();
    assert_eq!(sc.checks()[0].tcp.as_deref(), Some("127.0.0.1:21001"));
    let (svc, checks, token) = sc.into_parts();
    assert_eq!(svc.port, 21001);
    assert_eq!(checks.len(), 2);
    assert!(token.is_none());
    let too_long = ServiceDefinition {
        name: Some("a".repeat(60).parse().unwrap()),
        connect: Some(ServiceConnect {
            native: false,
            sidecar_service: Some(Box::default()),
        }),
        ..ServiceDefinition::default()
    };
    assert!(matches!(
        sidecar_from_service(&too_long, None),
        Err(SidecarError::Name(_))
    ));
    let gw_stanza = ServiceDefinition::from_json(
        r#"{"name":"web","connect":{"sidecar_service":{"kind":"mesh-gateway"}}}"#,
    )
    .unwrap();
    assert!(matches!(
        sidecar_from_service(&gw_stanza, None),
        Err(SidecarError::Kind(_))
    ));
    assert!(
        sidecar_from_service(&ServiceDefinition::default(), None)
            .unwrap()
            .is_none()
    );
}
