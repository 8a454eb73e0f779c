use super::*;

const HEADER: [u8; 8] = [0, b'a', b's', b'm', 1, 0, 0, 0];

fn leb(value: u32) -> Vec<u8> {
    let mut out = Vec::new();
    write_u32(&mut out, value);
    out
}

fn section(id: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![id];
    out.extend(leb(body.len() as u32));
    out.extend_from_slice(body);
    out
}

fn custom(name: &str, payload: &[u8]) -> Vec<u8> {
    let mut body = leb(name.len() as u32);
    body.extend_from_slice(name.as_bytes());
    body.extend_from_slice(payload);
    section(0, &body)
}

/// An export section: (name, kind, index) each.
fn export_section(exports: &[(&str, u8, u32)]) -> Vec<u8> {
    let mut body = leb(exports.len() as u32);
    for (name, kind, index) in exports {
        body.extend(leb(name.len() as u32));
        body.extend_from_slice(name.as_bytes());
        body.push(*kind);
        body.extend(leb(*index));
    }
    section(EXPORT_SECTION, &body)
}

fn module(sections: &[Vec<u8>]) -> Vec<u8> {
    let mut out = HEADER.to_vec();
    for section in sections {
        out.extend_from_slice(section);
    }
    out
}

const PROXY_EXPORTS: &[(&str, u8, u32)] = &[
    ("memory", 2, 0),
    ("malloc", 0, 475),
    ("proxy_on_tick", 0, 476),
    ("proxy_on_downstream_data", 0, 477),
    ("proxy_on_log", 0, 478),
    ("__heap_base", 3, 2),
];

#[test]
fn keeps_the_named_exports_and_every_other_section_as_it_was() {
    let types = section(1, &[1, 0x60, 0, 0]);
    let code = section(10, &[1, 2, 0, 0x0b]);
    let before = module(&[custom("producers", b"rustc"), types.clone(), export_section(PROXY_EXPORTS), code.clone()]);

    let trimmed = keep_exports(&before, &["memory", "proxy_on_tick", "malloc"]).unwrap();

    let expected = module(&[
        custom("producers", b"rustc"),
        types,
        export_section(&[("memory", 2, 0), ("malloc", 0, 475), ("proxy_on_tick", 0, 476)]),
        code,
    ]);
    assert_eq!(trimmed.module, expected);
    assert_eq!(trimmed.dropped, ["proxy_on_downstream_data", "proxy_on_log", "__heap_base"]);
    assert_eq!(export_names(&trimmed.module).unwrap(), ["memory", "malloc", "proxy_on_tick"]);
}

#[test]
fn keeping_every_export_gives_back_the_same_bytes() {
    let before = module(&[section(1, &[0]), export_section(PROXY_EXPORTS), custom("name", &[1, 2, 3])]);
    let names: Vec<&str> = PROXY_EXPORTS.iter().map(|(name, _, _)| *name).collect();

    let trimmed = keep_exports(&before, &names).unwrap();

    assert_eq!(trimmed.module, before);
    assert!(trimmed.dropped.is_empty());
}

#[test]
fn sizes_that_shrink_below_one_leb128_byte_are_re_encoded() {
    // 40 exports of 10-byte names: the section is longer than 127 bytes (two size bytes); one export is not.
    let names: Vec<String> = (0..40).map(|i| format!("callback{i:02}")).collect();
    let exports: Vec<(&str, u8, u32)> =
        names.iter().enumerate().map(|(i, name)| (name.as_str(), 0, i as u32)).collect();
    let before = module(&[export_section(&exports), section(10, &[0])]);
    assert_eq!(before[9] & 0x80, 0x80, "the fixture's export section size takes two bytes");

    let trimmed = keep_exports(&before, &["callback07"]).unwrap();

    assert_eq!(trimmed.module, module(&[export_section(&[("callback07", 0, 7)]), section(10, &[0])]));
    assert_eq!(trimmed.dropped.len(), 39);
}

#[test]
fn padded_integers_and_sections_unknown_to_it_are_copied() {
    // A section size padded to five bytes (as some linkers write them), and ids this tool has no name for: data
    // count (12), tag (13) and one beyond today's specification.
    let padded_types = [vec![1, 0x84, 0x80, 0x80, 0x80, 0x00], vec![1, 0x60, 0, 0]].concat();
    let before = module(&[
        padded_types.clone(),
        section(13, &[0]),
        export_section(PROXY_EXPORTS),
        section(12, &[3]),
        section(99, b"?"),
    ]);

    let trimmed = keep_exports(&before, &["memory"]).unwrap();

    let expected = module(&[
        padded_types,
        section(13, &[0]),
        export_section(&[("memory", 2, 0)]),
        section(12, &[3]),
        section(99, b"?"),
    ]);
    assert_eq!(trimmed.module, expected);
}

#[test]
fn keeping_nothing_leaves_an_empty_export_section() {
    let before = module(&[export_section(PROXY_EXPORTS)]);

    let trimmed = keep_exports(&before, &[]).unwrap();

    assert_eq!(trimmed.module, module(&[section(EXPORT_SECTION, &[0])]));
    assert!(export_names(&trimmed.module).unwrap().is_empty());
}

#[test]
fn a_name_to_keep_that_the_module_lacks_is_an_error_naming_it() {
    let before = module(&[export_section(PROXY_EXPORTS)]);

    let error = keep_exports(&before, &["memory", "proxy_on_request_headers", "proxy_on_vm_start"]).unwrap_err();

    assert_eq!(error, Error::Missing(vec!["proxy_on_request_headers".into(), "proxy_on_vm_start".into()]));
    assert!(error.to_string().contains("does not export proxy_on_request_headers, proxy_on_vm_start"), "{error}");
}

#[test]
fn a_module_without_an_export_section_lacks_every_name() {
    let error = keep_exports(&module(&[section(1, &[0])]), &["memory"]).unwrap_err();

    assert_eq!(error, Error::Missing(vec!["memory".into()]));
}

#[test]
fn malformed_modules_are_clear_errors() {
    let exports = export_section(PROXY_EXPORTS);
    let cases: Vec<(&str, Vec<u8>, Error)> = vec![
        ("empty", vec![], Error::NotWasm),
        ("not wasm", b"\x7fELF\x02\x01\x01\x00".to_vec(), Error::NotWasm),
        ("version 2", [&HEADER[..4], &[2, 0, 0, 0]].concat(), Error::UnsupportedVersion(2)),
        ("no version", HEADER[..6].to_vec(), Error::Truncated { what: "version", offset: 4 }),
        (
            "section longer than the module",
            [HEADER.as_slice(), &[1, 10, 0, 0]].concat(),
            Error::SectionOverrun { id: 1, offset: 8, size: 10 },
        ),
        (
            "size cut short",
            [HEADER.as_slice(), &[1, 0x80]].concat(),
            Error::Truncated { what: "section size", offset: 10 },
        ),
        (
            "size wider than 32 bits",
            [HEADER.as_slice(), &[1, 0xff, 0xff, 0xff, 0xff, 0x7f]].concat(),
            Error::BadInteger { what: "section size", offset: 9 },
        ),
        (
            "export count beyond its entries",
            module(&[section(EXPORT_SECTION, &[2, 1, b'm', 2, 0])]),
            Error::Truncated { what: "export name length", offset: 8 + 2 + 5 },
        ),
        (
            "bytes after the last export",
            module(&[section(EXPORT_SECTION, &[1, 1, b'm', 2, 0, 0xaa])]),
            Error::ExportSectionLength { declared_end: 8 + 2 + 6, entries_end: 8 + 2 + 5 },
        ),
        (
            "name not UTF-8",
            module(&[section(EXPORT_SECTION, &[1, 2, 0xff, 0xfe, 0, 0])]),
            Error::NameNotUtf8 { offset: 8 + 2 + 2 },
        ),
        (
            "two export sections",
            module(&[exports.clone(), exports.clone()]),
            Error::SecondExportSection { offset: 8 + exports.len() },
        ),
    ];
    for (case, bytes, expected) in cases {
        let error = keep_exports(&bytes, &[]).unwrap_err();
        assert_eq!(error, expected, "{case}");
        assert!(!error.to_string().is_empty());
    }
}

#[test]
fn errors_say_where_in_the_module() {
    let error = Error::SectionOverrun { id: 10, offset: 1234, size: 99999 };
    assert_eq!(error.to_string(), "section 10 at byte 1234 declares 99999 bytes, more than the module has left");
}

#[test]
fn a_list_holds_one_name_a_line_with_comments() {
    let list = "# kept by the SDK\nmemory\n\n  malloc   # the host allocates through it\nproxy_on_tick\n";

    assert_eq!(parse_list(list), ["memory", "malloc", "proxy_on_tick"]);
}
