"""`fairseq-wd-recipe NAME`: a training recipe of fairseq_wd/recipes.py as bash assignments, for
scripts that run fairseq-train themselves (examples/common/run_paper.sh does
`eval "$(fairseq-wd-recipe paper)"`). TEACHER_ARCH, TEACHER_UPDATES and STUDENT_UPDATES are
defaults that the environment overrides; WD's phases follow STUDENT_UPDATES.
"""
import argparse
import shlex

from ..recipes import RECIPES


def shell(recipe):
    arch = recipe.teacher.index("--arch")
    arrays = {"TEACHER_ARGS": recipe.teacher[:arch] + recipe.teacher[arch + 2:], "STUDENT_ENCODER_ARGS": recipe.student_encoder,
              "TRAIN_ARGS": recipe.train, "WD_PHASE1_ARGS": recipe.wd_phase1, "WD_PHASE2_ARGS": recipe.wd_phase2,
              "DISTILL_ARGS": recipe.distill}
    defaults = {"TEACHER_ARCH": recipe.teacher[arch + 1], "TEACHER_UPDATES": recipe.teacher_updates, "STUDENT_UPDATES": recipe.student_updates}
    lines = [f"{name}=({' '.join(map(shlex.quote, flags))})" for name, flags in arrays.items()]
    lines += [f': "${{{name}:={value}}}"' for name, value in defaults.items()]
    lines += [f"LABEL_SMOOTHING={recipe.label_smoothing}", f"AVERAGE_LAST={recipe.average_last}",
              # Recipe.wd_phase_updates: half of a student's updates each
              "WD_PHASE1_UPDATES=$((STUDENT_UPDATES / 2))",
              "WD_PHASE2_UPDATES=$((STUDENT_UPDATES - WD_PHASE1_UPDATES))"]
    return "\n".join(lines)


def get_parser():
    p = argparse.ArgumentParser(prog="fairseq-wd-recipe", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("recipe", choices=sorted(RECIPES), help="the recipe (fairseq-wd-pipeline --budget NAME runs the same)")
    return p


def main(argv=None):
    print(shell(RECIPES[get_parser().parse_args(argv).recipe]))


if __name__ == "__main__":
    main()
