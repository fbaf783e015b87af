"""AST -> IR, torch-free: :func:`.program.compile` loads a spec, checks each optimizer
(:mod:`.optimizer`: hyperparameters, selectors) and each rule body (:class:`.rule.RuleChecker`, with
the forms of :mod:`.forms` as handlers over :class:`.interface.Checker`), finishes each rule
(:mod:`.finish`) and returns a :class:`.program.Program` holding the IR (:mod:`.ir`). Lowering
(:mod:`optloom.lowering`) takes it from there."""
