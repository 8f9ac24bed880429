from trl_plugins import hookimpl


@hookimpl
def register_trainer(register):  # misspelled: the hook is register_trainers
    register("never", trainer="a.b:C", config="a.b:D")
