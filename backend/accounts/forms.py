"""Forms of the sign-in and "my account" pages (templates render the fields by hand)."""

from django import forms

from .models import ApiToken


class LoginForm(forms.Form):
    """Field names are a contract (DESIGN.md): `username` and `password`."""

    username = forms.CharField(max_length=150)
    password = forms.CharField(strip=False, max_length=4096)


class CodeForm(forms.Form):
    """A six-digit code from an authenticator app (spaces allowed, as apps show them)."""

    code = forms.CharField(max_length=12)


class TokenForm(forms.Form):
    name = forms.CharField(max_length=100)
    scopes = forms.MultipleChoiceField(
        choices=ApiToken.Scope.choices, widget=forms.CheckboxSelectMultiple
    )
