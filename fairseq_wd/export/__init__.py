"""A trained student as the file a user ships: a plain fairseq checkpoint (student.py) and a
CTranslate2 folder (ct2.py)."""
