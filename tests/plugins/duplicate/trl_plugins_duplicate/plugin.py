from trl_plugins import hookimpl


@hookimpl
def register_trainers(register):
    register("orpo", trainer="trl_plugins_duplicate.x:T", config="trl_plugins_duplicate.x:C", summary="clash")
