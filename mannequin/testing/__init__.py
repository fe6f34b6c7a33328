"""Test and benchmark support that users may call too: the synthetic scene (``mannequin synth``) and the numpy reference sweep."""
