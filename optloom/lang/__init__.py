"""The optloom language, text ⇄ AST, torch-free: :mod:`.parser` (text -> :mod:`.ast`, through the
lark grammar and :mod:`.transform`), :mod:`.printer` (AST -> canonical text), :mod:`.comments`
(``optloom fmt``), :mod:`.diagnostics`, :mod:`.loader` (shipped specs, files, imports), and two
tools over ASTs: :mod:`.edits` (remove or replace a labeled stage) and :mod:`.diff` (structural
diff). The checker (:mod:`optloom.check`) turns an AST into IR."""
