//! Tokenizer parity with the transformers fast tokenizer (cases made by gen_siglip_fixtures.py).
mod common;

use ldctq::tokenizer::SiglipTokenizer;
use serde::Deserialize;

#[derive(Deserialize)]
struct Case {
    text: String,
    ids: Vec<i64>,
}

fn tokenizer() -> SiglipTokenizer {
    SiglipTokenizer::from_file(&common::fixture("siglip/tokenizer.json"), 64).unwrap()
}

#[test]
fn matches_transformers_fast_tokenizer() {
    let text = std::fs::read_to_string(common::fixture("siglip/tokenizer_cases.json")).unwrap();
    let cases: Vec<Case> = serde_json::from_str(&text).unwrap();
    assert!(cases.len() >= 10);
    let tok = tokenizer();
    for case in &cases {
        assert_eq!(tok.encode(&case.text).unwrap(), case.ids, "text {:?}", case.text);
    }
    // The fixtures exercise truncation (63 pieces + EOS) and padding with id 1.
    assert!(cases.iter().any(|c| c.ids[62] != 1 && c.ids[63] == 1), "no truncated case");
    assert!(cases.iter().any(|c| c.ids[..2] == [1, 1]), "no empty case");
}

#[test]
fn batch_encoding_and_errors() {
    let tok = tokenizer();
    let ids = tok.encode_batch(&["a ct slice", "noise"]).unwrap();
    assert_eq!(ids.size(), [2, 64]);
    assert!(tok.encode_batch(&[]).is_err());
    let err =
        SiglipTokenizer::from_file(std::path::Path::new("/nonexistent/tokenizer.json"), 64).unwrap_err();
    assert!(err.to_string().contains("/nonexistent/tokenizer.json"), "{err}");
    let dir = common::temp_dir("tok");
    let bad = dir.join("tokenizer.json");
    std::fs::write(&bad, "{not json").unwrap();
    assert!(SiglipTokenizer::from_file(&bad, 64).unwrap_err().to_string().contains("tokenizer.json"));
}
