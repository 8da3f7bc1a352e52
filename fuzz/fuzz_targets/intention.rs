//! Decodes arbitrary JSON as a service-intentions config entry; validation never panics, an
//! accepted set decides like a linear scan in evaluation order, and a valid entry converts to
//! intentions the set accepts.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mesh_intentions::intention::{
    Intention, IntentionDefault, IntentionSet, ServiceIntentionsEntry, WILDCARD,
};

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(mut entry) = ServiceIntentionsEntry::from_json(s) else {
        return;
    };
    // Unvalidated conversion first: arbitrary intentions for the set.
    let ixns = entry.to_intentions();
    entry.normalize();
    if entry.validate(false).is_ok() {
        IntentionSet::build(entry.to_intentions()).expect("a valid entry builds a set");
    }
    for i in &ixns {
        let _ = i.validate();
        let _ = i.to_string();
    }
    let Ok(set) = IntentionSet::build(ixns) else {
        return;
    };
    let def = IntentionDefault::new(None, None);
    let names: Vec<String> = set
        .iter()
        .flat_map(|i| [i.source_name.clone(), i.destination_name.clone()])
        .chain(["zz-none".to_owned()])
        .collect();
    let m = |p: &str, n: &str| p == WILDCARD || p == n;
    for src in &names {
        for dst in &names {
            let peerless =
                |i: &&Intention| i.source_peer.is_empty() && i.source_sameness_group.is_empty();
            let want = set
                .iter()
                .filter(peerless)
                .find(|i| m(&i.source_name, src) && m(&i.destination_name, dst));
            assert_eq!(set.decide(src, dst, def).intention(), want);
        }
    }
});
