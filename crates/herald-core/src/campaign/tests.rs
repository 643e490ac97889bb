use super::*;

#[test]
fn scratch() {
    let p = crate::render::parser();
    let u = crate::user::User::new("u", "1").with_attr("n", "abc").with_attr("e", "");
    let g = crate::render::globals_for_test(&u);
    for t in ["{{ n | plus: 1 }}", "{{ e | default: 'x' }}", "{{ n.foo }}", "{{ zz.foo }}", "{{ n | date: '%Y' }}", "{{ missing | upcase }}", "{% include 'x' %}"] {
        match p.parse(t) {
            Ok(tp) => eprintln!("{t}: {:?}", tp.render(&g).map_err(|e| e.to_string())),
            Err(e) => eprintln!("{t}: parse {e}"),
        }
    }
}
