"""Reduced precisions: conversion, calibration data, the accuracy gate, per-layer sensitivity."""
